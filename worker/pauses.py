"""Paused lanes: an operator's flag per market and lane, with who set it and when.

One Redis hash, `lanes:paused`, field `{market}:{lane}`, value
`{"by": "...", "at": "2026-12-04T17:00:00+00:00"}`. `lanes pause` / `lanes resume`
and the board set and clear it; while it is set, every worker stops receiving that
lane's messages (messages already received finish). A worker reads the hash at most
once per `refresh` seconds, whatever the number of its lanes, so a pause takes effect
within about that long.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable
from lanes.policy import Lane

__all__ = ["PAUSED_KEY", "LanePauses"]

PAUSED_KEY = "lanes:paused"
_log = structlog.get_logger("worker.pauses")


def _field(market: str, lane: Lane) -> str:
    return f"{market}:{lane.value}"


class LanePauses:
    """Reads and sets the pause flags; `paused` is the worker's cached check."""

    def __init__(self, redis: aioredis.Redis, *, refresh: float = 1.0) -> None:
        self._redis = redis
        self._refresh = refresh
        self._known: dict[str, dict[str, Any]] = {}
        self._read_at = float("-inf")
        self._reading = asyncio.Lock()  # one read at a time; the lanes waiting share it

    async def pause(self, market: str, lane: Lane, *, by: str) -> dict[str, Any]:
        """Set the flag (again: `by` and `at` are replaced); the record as stored."""
        record = {"by": by, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        try:
            await self._redis.hset(PAUSED_KEY, _field(market, lane), json.dumps(record))
        except RedisError as exc:
            raise BudgetUnavailable(f"pause flags unreachable: {exc}") from exc
        _log.info("lane.paused", market=market, lane=lane.value, by=by)
        return record

    async def resume(self, market: str, lane: Lane, *, by: str) -> bool:
        """Clear the flag; False when the lane was not paused."""
        try:
            removed = await self._redis.hdel(PAUSED_KEY, _field(market, lane))
        except RedisError as exc:
            raise BudgetUnavailable(f"pause flags unreachable: {exc}") from exc
        _log.info("lane.resumed", market=market, lane=lane.value, by=by, was_paused=bool(removed))
        return bool(removed)

    async def all(self) -> dict[str, dict[str, Any]]:
        """`{"market:lane": {"by": ..., "at": ...}}` for every paused lane."""
        try:
            raw = await self._redis.hgetall(PAUSED_KEY)
        except RedisError as exc:
            raise BudgetUnavailable(f"pause flags unreachable: {exc}") from exc
        flags: dict[str, dict[str, Any]] = {}
        for name, value in raw.items():
            field = name.decode() if isinstance(name, bytes) else str(name)
            try:
                flags[field] = json.loads(value)
            except ValueError:
                flags[field] = {"by": "?", "at": None}  # a hand-set flag still pauses
        return flags

    async def paused(self, market: str, lane: Lane) -> bool:
        """Whether the lane is paused, as read at most `refresh` s ago. Redis down: the last
        answer stands (a worker keeps its lanes as they were rather than stop or start)."""
        async with self._reading:
            if time.monotonic() - self._read_at >= self._refresh:
                try:
                    self._known = await self.all()
                except BudgetUnavailable as exc:
                    _log.warning("pauses.read_failed", error=str(exc))
                self._read_at = time.monotonic()
        return _field(market, lane) in self._known
