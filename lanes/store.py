"""The one owner of a process's Redis connection pool."""

from __future__ import annotations

import redis.asyncio as aioredis

from lanes.resource import AsyncResource

__all__ = ["RedisStore"]


class RedisStore(AsyncResource):
    """Owns a `redis.asyncio.Redis` client; budgets, token caches and idempotency keys share it.

    Short socket timeouts: a budget must fail closed fast, not hang, when Redis is gone.
    """

    def __init__(self, url: str, *, socket_timeout: float = 2.0) -> None:
        self.url = url
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=15,
            decode_responses=False,
        )

    async def _close(self) -> None:
        await self.client.aclose()
