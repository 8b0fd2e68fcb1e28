"""Receives that spent no attempt, so the low lane's crash-loop guard counts only real ones.

SQS counts every receive (`ApproximateReceiveCount`), including those that
ended in a wait for budget (`RetryLater`), a busy claim or a shutdown release.
Waiting never counts as a failed attempt (docs/DESIGN.md rule 12), so each such
release is noted here and subtracted before a low message is called a crash loop.
"""

from __future__ import annotations

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from worker.queues import Delivery

__all__ = ["ReleaseLedger"]

_log = structlog.get_logger("worker.tracking")


class ReleaseLedger:
    """One Redis counter per message; lost notes (Redis down) only make the guard stricter."""

    def __init__(self, redis: aioredis.Redis, *, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl

    @staticmethod
    def key(delivery: Delivery) -> str:
        return f"lanes:released:{{{delivery.queue.queue}}}:{delivery.message.message_id}"

    async def note(self, delivery: Delivery) -> None:
        """Record one receive of `delivery` that spent no attempt."""
        key = self.key(delivery)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self._ttl)
                await pipe.execute()
        except RedisError as exc:
            _log.warning("ledger.note_failed", error=str(exc))

    async def free_receives(self, delivery: Delivery) -> int | None:
        """Receives of `delivery` that spent no attempt; None when Redis cannot say."""
        try:
            value = await self._redis.get(self.key(delivery))
        except RedisError as exc:
            _log.warning("ledger.read_failed", error=str(exc))
            return None
        return int(value) if value is not None else 0
