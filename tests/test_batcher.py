"""Coalesced acquires: concurrent waits of one process share round trips and keep the limit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
import structlog

from lanes import Admission, Budget, BudgetUnavailable, Lane, Limiter, Window
from lanes.batcher import AcquireBatcher, Grant
from tests.conftest import OwnRedis
from tests.waiting import soon
from tests.windows import over_limit_windows

MakeLimiter = Callable[..., Limiter]
MakeBudget = Callable[..., Budget]


async def _script_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


async def test_concurrent_waits_share_round_trips_and_keep_the_limit(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """40 waits at once on a 10-per-0.2 s budget take far fewer than 40 script calls,
    and the reserved moments still never put more than 10 in any 0.2 s."""
    limiter, budget = make_limiter(), make_budget(10, 0.2)
    await redis_client.config_resetstat()
    await asyncio.gather(*(limiter.wait(budget, Lane.HIGH) for _ in range(40)))
    assert await _script_calls(redis_client) <= 5
    scored = await redis_client.zrange(budget.log_key, 0, -1, withscores=True)
    assert len(scored) == 40
    moments = [score / 1_000_000 for _, score in scored]
    assert over_limit_windows(moments, Window(limit=10, seconds=0.2)) == 0


async def test_batch_error_reaches_every_waiter(
    make_budget: MakeBudget, own_redis: OwnRedis
) -> None:
    """When Redis is gone, every waiter of the batch gets BudgetUnavailable."""
    limiter = Limiter(own_redis.store.client)
    own_redis.server.stop()
    results = await asyncio.gather(
        *(limiter.wait(make_budget(), Lane.LOW) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(result, BudgetUnavailable) for result in results)


async def test_unexpected_error_reaches_every_waiter_and_is_logged(
    make_budget: MakeBudget,
) -> None:
    """Whatever a round trip raises (here a bug: RuntimeError) reaches every waiter of the
    batch, none is left pending, and the error is logged; the next batch works again."""
    calls = 0

    async def submit(
        budget: Budget, requests: Sequence[tuple[Lane, int]], give_back: Sequence[str]
    ) -> list[Grant]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return [Grant(Admission(True, 0.0, 0.0), ()) for _ in requests]

    async def release(budget: Budget, members: Sequence[str]) -> None:
        return None

    batcher = AcquireBatcher(submit, release)
    budget = make_budget()
    with structlog.testing.capture_logs() as logs:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(batcher.request(budget, Lane.HIGH, 1) for _ in range(5)),
                return_exceptions=True,
            ),
            timeout=10,
        )
    assert all(isinstance(result, RuntimeError) for result in results)
    assert [entry["event"] for entry in logs] == ["budget.acquire_failed"]
    grant = await asyncio.wait_for(batcher.request(budget, Lane.HIGH, 1), timeout=10)
    assert grant.admission.granted


async def test_one_round_trip_carries_every_lane_each_within_its_ceiling(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """Waits of all three lanes at once share round trips (a lower lane costs no more
    than high), and each lane is still held to its own ceiling of the shared count."""
    limiter, budget = make_limiter(), make_budget(10, 0.3)
    await redis_client.config_resetstat()
    lanes = [Lane.LOW] * 12 + [Lane.MEDIUM] * 12 + [Lane.HIGH] * 12
    tickets = await asyncio.gather(*(limiter.admit(budget, lane) for lane in lanes))
    assert await _script_calls(redis_client) <= 8
    # The admitted moments from the tickets: the log itself prunes what left the window.
    by_lane: dict[str, list[float]] = {}
    for lane, ticket in zip(lanes, tickets, strict=True):
        by_lane.setdefault(lane.value, []).append(ticket.at)
    assert {lane: len(moments) for lane, moments in by_lane.items()} == {
        "low": 12, "medium": 12, "high": 12
    }  # fmt: skip
    everything = [moment for moments in by_lane.values() for moment in moments]
    assert over_limit_windows(everything, Window(limit=10, seconds=0.3)) == 0
    assert over_limit_windows(by_lane["low"], Window(limit=7, seconds=0.3)) == 0


async def test_callers_woken_as_a_round_trip_leaves_ride_along(make_budget: MakeBudget) -> None:
    """A round trip about to leave asks `boarding` first; the callers it wakes join that
    round trip (one submit carries both) instead of asking in one of their own."""
    carried: list[list[Lane]] = []
    room = asyncio.Event()

    async def submit(
        budget: Budget, requests: Sequence[tuple[Lane, int]], give_back: Sequence[str]
    ) -> list[Grant]:
        carried.append([lane for lane, _ in requests])
        return [Grant(Admission(True, 0.0, 0.0), ()) for _ in requests]

    async def release(budget: Budget, members: Sequence[str]) -> None:
        return None

    def boarding(budget: Budget) -> bool:
        if room.is_set():
            return False
        room.set()
        return True

    batcher = AcquireBatcher(submit, release, boarding=boarding)
    budget = make_budget()

    async def rider() -> Grant:
        await room.wait()
        return await batcher.request(budget, Lane.LOW, 1, at_once=True)

    await asyncio.wait_for(
        asyncio.gather(rider(), batcher.request(budget, Lane.HIGH, 1)), timeout=10
    )
    assert carried == [[Lane.HIGH, Lane.LOW]]


async def test_a_lanes_room_rides_along_with_high_round_trips(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """Low booked a window ahead asks next in a room (at its booking less `keep`); its
    callers meanwhile wait there. A high round trip leaving after the room's exact wait
    carries them: one script call admits all three, where the room asks in a second."""
    limiter, budget = make_limiter(), make_budget(10, 0.2)
    await asyncio.gather(*(limiter.admit(budget, Lane.LOW) for _ in range(7)))  # low's 0.7
    booked = asyncio.gather(*(limiter.admit(budget, Lane.LOW) for _ in range(3)))
    assert await soon(lambda: limiter._rooms)  # the three are granted a window ahead
    await redis_client.config_resetstat()
    waiting = asyncio.gather(*(limiter.admit(budget, Lane.LOW) for _ in range(2)))
    await asyncio.wait_for(asyncio.gather(limiter.admit(budget, Lane.HIGH), waiting), 10)
    assert await _script_calls(redis_client) == 1
    await booked
