"""Per-(market, seller) orders collected but not yet final, in Redis: what `repoll_orders`
without ids reads again, so a later change (a cancellation after collection) is seen.

A collection adds the orders it saw in a status that is not final and drops the final
ones; a repoll drops those it finds final (or that the market no longer knows) and puts
the rest at the back, so each repoll reads the orders not read for longest and one that
never becomes final does not hold up the others. An order tracked for `MAX_AGE` without
becoming final is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from markets.errors import TransientError

__all__ = ["MAX_AGE_S", "OpenOrders"]

MAX_AGE_S = 90 * 86_400  # seconds an order may stay open before it is no longer tracked


class OpenOrders:
    """The open orders of each seller; a Redis failure is a `TransientError` (retry)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @staticmethod
    def key(market: str, seller: str) -> str:
        return f"lanes:open-orders:{market}:{seller}"

    async def update(
        self,
        market: str,
        seller: str,
        *,
        open_ids: Iterable[str],
        final_ids: Iterable[str],
        reread: bool = False,
    ) -> None:
        """Track `open_ids` (a collection keeps those already tracked in their place; a
        `reread` moves them to the back), forget `final_ids` and those tracked too long."""
        key = self.key(market, seller)
        now_ms = int(time.time() * 1000)
        opened = {str(order): now_ms for order in open_ids}
        closed = [str(order) for order in final_ids]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if opened:
                    pipe.zadd(key, opened, xx=reread, nx=not reread)
                if closed:
                    pipe.zrem(key, *closed)
                pipe.zremrangebyscore(key, 0, now_ms - MAX_AGE_S * 1000)
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
