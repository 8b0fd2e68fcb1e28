"""Per-(market, seller) orders collected but not yet final, in Redis: what `repoll_orders`
without ids reads again, so a later change (a cancellation after collection) is seen.

A collection adds the orders it saw in a status that is not final and drops the final
ones; a repoll drops those it finds final (or that the market no longer knows). Oldest
first: each repoll reads the orders tracked longest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from markets.errors import TransientError

__all__ = ["OpenOrders"]


class OpenOrders:
    """The open orders of each seller; a Redis failure is a `TransientError` (retry)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @staticmethod
    def key(market: str, seller: str) -> str:
        return f"lanes:open-orders:{market}:{seller}"

    async def update(
        self, market: str, seller: str, *, open_ids: Iterable[str], final_ids: Iterable[str]
    ) -> None:
        """Track `open_ids` (kept at their first sighting), forget `final_ids`."""
        key = self.key(market, seller)
        now_ms = int(time.time() * 1000)
        opened = {str(order): now_ms for order in open_ids}
        closed = [str(order) for order in final_ids]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if opened:
                    pipe.zadd(key, opened, nx=True)
                if closed:
                    pipe.zrem(key, *closed)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise TransientError(f"open orders unavailable: {exc}", market=market) from exc

    async def oldest(self, market: str, seller: str, count: int) -> list[str]:
        """Up to `count` open orders, tracked longest first."""
        try:
            found = await self._redis.zrange(self.key(market, seller), 0, count - 1)
        except (RedisError, OSError) as exc:
            raise TransientError(f"open orders unavailable: {exc}", market=market) from exc
        return [each.decode() if isinstance(each, bytes) else str(each) for each in found]
