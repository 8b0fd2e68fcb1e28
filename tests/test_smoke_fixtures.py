"""The fixtures start real services."""

from __future__ import annotations

import redis.asyncio as aioredis


async def test_redis_fixture_answers(redis_client: aioredis.Redis) -> None:
    """The test Redis is a real server that this session started."""
    assert await redis_client.ping()
