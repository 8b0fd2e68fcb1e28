"""The producer's `id` guards side-effect jobs (ship, answer) against a second run.

One Redis key per (market, id): `run:<token>` while a worker holds the claim
(short TTL, refreshed while the job runs), `done:<json>` once the job
succeeded (TTL `idempotency_ttl`). A redelivery that finds `done` is
acknowledged with the recorded result; one that finds a live claim comes back
later, so two concurrent deliveries never both call the market.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable, LanesError

__all__ = ["Claim", "ClaimBusy", "IdempotencyGuard"]

_BUSY_RETRY_CAP = 3.0
_RUN = b"run:"
_DONE = b"done:"
# Compare-and-set on our own claim: never touch another worker's claim or a done record.
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_ABANDON = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ClaimBusy(LanesError):
    """Another delivery of the same job holds the claim; try again in `retry_after` s."""

    def __init__(self, key: str, retry_after: float) -> None:
        super().__init__(f"job {key} is running elsewhere")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Claim:
    """The result of `begin`: either a recorded result (`done`) or our claim token."""

    key: str
    token: bytes | None = None
    done: dict[str, Any] | None = None


class IdempotencyGuard:
    """Claims and done records in Redis; a Redis failure raises `BudgetUnavailable`."""

    def __init__(self, redis: aioredis.Redis, *, ttl: int, claim_seconds: float) -> None:
        self._redis = redis
        self._ttl = ttl
        self._claim_ms = max(1000, int(claim_seconds * 1000))

    @staticmethod
    def key(market: str, job_id: str) -> str:
        return f"lanes:idem:{{{market}}}:{job_id}"

    async def begin(self, market: str, job_id: str) -> Claim:
        """Claim the job, or return its recorded result; raises `ClaimBusy` if held elsewhere."""
        key = self.key(market, job_id)
        token = _RUN + secrets.token_hex(8).encode()
        try:
            if await self._redis.set(key, token, nx=True, px=self._claim_ms):
                return Claim(key=key, token=token)
            raw = await self._redis.get(key)
            value = raw.encode() if isinstance(raw, str) else raw
            held_ms = await self._redis.pttl(key) if value is not None else 0
        except RedisError as exc:
            raise BudgetUnavailable(f"idempotency store unreachable: {exc}") from exc
        if value is None:  # it expired between the two calls: take it on the next round
            raise ClaimBusy(key, 0.5)
        if value.startswith(_DONE):
            recorded: dict[str, Any] = json.loads(value[len(_DONE) :])
            return Claim(key=key, done=recorded)
        # The holder usually finishes well before its claim would lapse: look again soon.
        raise ClaimBusy(key, min(_BUSY_RETRY_CAP, max(1.0, held_ms / 1000)))

    async def finish(self, claim: Claim, result: dict[str, Any]) -> None:
        """Record the done result (replaces the claim)."""
        payload = _DONE + json.dumps(result, separators=(",", ":"), default=str).encode()
        try:
            await self._redis.set(claim.key, payload, ex=self._ttl)
        except RedisError as exc:
            raise BudgetUnavailable(f"idempotency store unreachable: {exc}") from exc

    async def abandon(self, claim: Claim) -> None:
        """Drop our claim so a redelivery may run the job; best effort (it expires anyway)."""
        if claim.token is None:
            return
        try:
            await self._redis.eval(_ABANDON, 1, claim.key, claim.token)
        except RedisError:
            return  # the claim's TTL frees it

    @asynccontextmanager
    async def held(self, claim: Claim) -> AsyncIterator[None]:
        """Keep our claim alive while the body runs (the job may outlast one claim TTL)."""
        refresher = asyncio.create_task(self._refresh_forever(claim))
        try:
            yield
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    async def _refresh_forever(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self._claim_ms / 3000)
            try:
                await self._redis.eval(_REFRESH, 1, claim.key, claim.token or b"", self._claim_ms)
            except RedisError:
                continue  # Redis is back soon or the claim lapses; the job itself goes on
