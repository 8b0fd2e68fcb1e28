"""The one owner of a process's Redis connection pool."""

from __future__ import annotations

from types import TracebackType

import redis.asyncio as aioredis

__all__ = ["RedisStore"]


class RedisStore:
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
        self._closed = False

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self.client.aclose()
