"""Orders collected but not yet final, per (market, seller), in Redis."""

from __future__ import annotations

import time

from lanes import RedisStore
from markets.open_orders import MAX_AGE_S, OpenOrders


async def test_a_repoll_reads_the_longest_unread_first_and_never_starves_the_rest(
    store: RedisStore,
) -> None:
    """Collected a, b, c: a repoll of two reads a and b, then puts them at the back, so the
    next reads c first; a collection seeing a again leaves it in its place."""
    orders = OpenOrders(store.client)
    collected = int(time.time() * 1000) - 60_000  # a minute ago, a, b, c in that order
    scores = {"a": collected, "b": collected + 1, "c": collected + 2}
    await store.client.zadd(OpenOrders.key("naver", "s"), scores)
    await orders.update("naver", "s", open_ids=["c"], final_ids=[])
    assert await orders.oldest("naver", "s", 2) == ["a", "b"]
    await orders.update("naver", "s", open_ids=["a", "b"], final_ids=[], reread=True)
    await orders.update("naver", "s", open_ids=["a"], final_ids=[])
    assert await orders.oldest("naver", "s", 3) == ["c", "a", "b"]
    await orders.update("naver", "s", open_ids=[], final_ids=["c"])
    assert await orders.oldest("naver", "s", 3) == ["a", "b"]
    assert await orders.oldest("naver", "other", 3) == []


async def test_an_order_open_for_too_long_is_no_longer_tracked(store: RedisStore) -> None:
    orders = OpenOrders(store.client)
    stale = int((time.time() - MAX_AGE_S - 60) * 1000)
    await store.client.zadd(OpenOrders.key("coupang", "A1"), {"600000001": stale})
    await orders.update("coupang", "A1", open_ids=["600000002"], final_ids=[])
    assert await orders.oldest("coupang", "A1", 5) == ["600000002"]
