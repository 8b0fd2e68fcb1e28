"""Access tokens shared by every worker through Redis, each also held in this process until
its Redis lifetime ends (a call then costs no Redis round trip), and the Redis lock one
worker takes to fetch a new one. Cafe24's and Naver's token holders both build on it; what
they fetch and how they refuse stays theirs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable

__all__ = ["TokenCache"]

_COMPARE_DELETE = resources.files("markets").joinpath("compare_delete.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class _Held:
    token: str
    fresh_until: float  # time.monotonic()


class TokenCache:
    """One market's tokens by name (a mall, an account): Redis key per name, in-process copy."""

    def __init__(self, market: str, redis: aioredis.Redis) -> None:
        self._market = market
        self._redis = redis
        self._compare_delete = redis.register_script(_COMPARE_DELETE)
        self._held: dict[str, _Held] = {}

    def held(self, name: str) -> str | None:
        """The token this process holds for `name` while its Redis lifetime lasts."""
        held = self._held.get(name)
        if held is not None and time.monotonic() < held.fresh_until:
            return held.token
        return None

    async def cached(self, name: str, key: str) -> str | None:
        """The token another worker (or this one) put in Redis under `key`, now held here."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            value, pttl = await self.call(pipe.execute())
        if value is None or pttl <= 0:
            return None
        token = bytes(value).decode()
        self._held[name] = _Held(token, time.monotonic() + pttl / 1000)
        return token

    async def keep(
        self, name: str, key: str, token: str, expires_in: float, refresh_before: float
    ) -> None:
        """Cache a new token until `refresh_before` seconds before it expires (or half of a
        short-lived token's life), at least a second."""
        margin = min(refresh_before, expires_in / 2)
        lifetime_ms = max(1_000, round((expires_in - margin) * 1000))
        await self.call(self._redis.set(key, token, px=lifetime_ms))
        self._held[name] = _Held(token, time.monotonic() + lifetime_ms / 1000)

    def drop(self, name: str) -> str | None:
        """Stop holding `name`'s token here; the token dropped, if any (for `delete`)."""
        held = self._held.pop(name, None)
        return None if held is None else held.token

    async def delete(self, key: str, token: str) -> None:
        """Delete `key` in Redis only if it still holds `token` (another worker may already
        have replaced it)."""
        await self.call(self._compare_delete(keys=[key], args=[token]))

    async def under_lock(
        self, lock: str, lock_ms: int, work: Callable[[], Awaitable[str]]
    ) -> str | None:
        """`work()` under the Redis lock (SET NX PX, deleted only by its owner); None when
        another worker holds it."""
        owner = secrets.token_hex(8)
        if not await self.call(self._redis.set(lock, owner, nx=True, px=lock_ms)):
            return None
        try:
            return await work()
        finally:
            await self.call(self._compare_delete(keys=[lock], args=[owner]))

    async def call(self, pending: Awaitable[Any]) -> Any:
        """Await a Redis call; Redis down is `BudgetUnavailable` (retried later)."""
        try:
            return await pending
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(
                f"{self._market} token cache: redis unavailable: {exc}"
            ) from exc
