"""The one owner of a process's Redis connection pool."""

from __future__ import annotations

import redis.asyncio as aioredis

from lanes.resource import AsyncResource

__all__ = ["MAX_CONNECTIONS", "POOL_WAIT_SECONDS", "RedisStore"]

# Connections per process. redis-py's plain pool *raises* "Too many connections" past its
# 100, and a worker with 1,000 slots has more callers than that at once (claims, status
# writes, budgets): the soak's 4 x 1,000 slots failed 17,000 budget calls that way and
# released their jobs. Callers beyond the pool wait for a connection instead.
MAX_CONNECTIONS = 100
# How long a caller waits for a free connection: local contention, not Redis's health
# (a Redis that is gone fails each connection within the socket timeout, freeing it).
POOL_WAIT_SECONDS = 10.0


class RedisStore(AsyncResource):
    """Owns a `redis.asyncio.Redis` client; budgets, token caches and idempotency keys share it.

    Short socket timeouts: a budget must fail closed fast, not hang, when Redis is gone.
    """

    def __init__(
        self,
        url: str,
        *,
        socket_timeout: float = 2.0,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.url = url
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT_SECONDS,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=15,
            decode_responses=False,
        )
        self.client: aioredis.Redis = aioredis.Redis.from_pool(pool)

    async def _close(self) -> None:
        await self.client.aclose()
