"""`lanes.store.RedisStore`: the one owner of a process's Redis connections."""

from __future__ import annotations

import asyncio

from lanes.store import RedisStore
from scripts.local.services import RedisServer


async def test_more_callers_than_connections_wait_for_one_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    """A worker with 1,000 slots has more callers at once than its pool has connections:
    each waits for a free connection (redis-py's plain pool raised "Too many connections"
    past 100, and the soak's jobs were released by the thousand)."""
    async with RedisStore(redis_server.url, max_connections=5) as store:
        answers = await asyncio.gather(
            *(store.client.incr("lanes-test:store-callers") for _ in range(500))
        )
        assert sorted(answers) == list(range(1, 501))
        await store.client.delete("lanes-test:store-callers")


async def test_aclose_is_safe_twice(redis_server: RedisServer) -> None:
    """Closing twice (an `async with` and an explicit close) does nothing the second time."""
    store = RedisStore(redis_server.url)
    async with store:
        assert await store.client.ping()
    await store.aclose()
