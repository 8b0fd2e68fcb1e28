"""Per-(market, seller) collection watermarks in Redis: "collect since last time".

The scheduler's collection job carries no window; the job reads from the last
watermark (minus the market's overlap) to now (minus its settling lag), and moves
the watermark forward only after the whole window was collected, so a missed or
failed run loses nothing: the next one starts where the last success ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from markets.errors import TransientError

__all__ = ["Watermark", "Watermarks"]


@dataclass(frozen=True)
class Watermark:
    """Where a delivered collection of `what` ends: the seller's watermark moves there."""

    what: str
    until: datetime

    def record(self) -> dict[str, Any]:
        """Its place in the result record (`watermark`), read back by `from_record`."""
        return {"what": self.what, "until": self.until.isoformat(timespec="milliseconds")}

    @classmethod
    def from_record(cls, value: Any) -> Watermark | None:
        """The watermark a result record carries, or None."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(str(value["what"]), datetime.fromisoformat(str(value["until"])))
        except (KeyError, ValueError):
            return None


class Watermarks:
    """Reads and advances watermarks; a Redis failure is a `TransientError` (retry)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        script = resources.files("markets").joinpath("watermark.lua").read_text(encoding="utf-8")
        self._advance = redis.register_script(script)

    @staticmethod
    def key(market: str, seller: str, what: str) -> str:
        return f"lanes:watermark:{market}:{seller}:{what}"

    async def get(self, market: str, seller: str, what: str) -> datetime | None:
        try:
            value = await self._redis.get(self.key(market, seller, what))
        except (RedisError, OSError) as exc:
            raise TransientError(f"watermark unavailable: {exc}", market=market) from exc
        if value is None:
            return None
        return datetime.fromtimestamp(int(value) / 1000, UTC)

    async def advance(self, market: str, seller: str, what: str, moment: datetime) -> None:
        millis = int(moment.timestamp() * 1000)
        try:
            await self._advance(keys=[self.key(market, seller, what)], args=[millis])
        except (RedisError, OSError) as exc:
            raise TransientError(f"watermark unavailable: {exc}", market=market) from exc
