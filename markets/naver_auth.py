"""Naver Commerce OAuth2 (client_credentials), each token shared by every worker.

A solution app serving many sellers asks one token per seller account
(`type=SELLER` with `account_id`); a single-seller app asks its own (`type=SELF`).
Each token (valid 3 hours) lives in Redis under (app, account). A worker that finds it missing or
close to expiry takes a Redis lock (SET NX PX) and fetches a new one; the
others wait for it to appear. Each process also keeps it in memory until its
Redis lifetime ends, so a call costs no Redis round trip for the token.
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import bcrypt
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable
from lanes.policy import Lane
from markets.auth import Signer
from markets.credentials import Credentials
from markets.errors import PermanentError, RetryLater

__all__ = ["NaverAuth", "NaverTokens", "TokenFetch", "client_secret_sign"]

log = structlog.get_logger("markets.naver_auth")

# (form fields, lane, deadline) -> the token endpoint's JSON answer
TokenFetch = Callable[[dict[str, str], Lane, float | None], Awaitable[Any]]

# Naver hands back the same token while it has 30 minutes or more left, so a
# refresh must happen inside those last 30 minutes to get a new one.
REFRESH_BEFORE_S = 30 * 60 - 60
LOCK_MS = 15_000
# The token's timestamp is checked against Naver's clock: stay a little behind it.
CLOCK_SKEW_MS = 3_000
_COMPARE_DELETE = resources.files("markets").joinpath("compare_delete.lua").read_text("utf-8")


def client_secret_sign(client_id: str, client_secret: str, timestamp_ms: int) -> str:
    """base64(bcrypt(f"{client_id}_{timestamp}", salt=client_secret)), as Naver defines it."""
    hashed = bcrypt.hashpw(f"{client_id}_{timestamp_ms}".encode(), client_secret.encode())
    return base64.b64encode(hashed).decode()


@dataclass(frozen=True, slots=True)
class _Held:
    token: str
    fresh_until: float  # time.monotonic()


class NaverTokens:
    """The tokens of one Naver app: one per seller account (`type=SELLER`, the solution-app
    model) or one for the app itself (`type=SELF`); Redis cache per (app, account),
    refresh lock, in-process copy."""

    def __init__(
        self,
        market: str,
        redis: aioredis.Redis,
        credentials: Credentials,
        fetch: TokenFetch,
        *,
        token_type: str = "SELF",
    ) -> None:
        if token_type not in ("SELF", "SELLER"):
            raise PermanentError(f"token_type {token_type!r}: SELF or SELLER", market=market)
        self._market = market
        self._redis = redis
        self._compare_delete = redis.register_script(_COMPARE_DELETE)
        self._credentials = credentials
        self._fetch = fetch
        self._token_type = token_type
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetched = 0  # tokens this process fetched from the market

    async def account(self, seller: str | None) -> str:
        """The account a seller's token is for: its own `account_id` credential under SELLER
        (missing: a permanent error naming the seller; the seller's name is not its account
        id); "" (the app's own) under SELF."""
        if self._token_type == "SELF":
            return ""
        if not seller:
            raise PermanentError(
                "type=SELLER tokens need the message's seller", market=self._market
            )
        return (await self._credentials.get("account_id", seller)).get_secret_value()

    async def _keys(self, account: str) -> tuple[str, str]:
        client_id = (await self._credentials.get("client_id")).get_secret_value()
        base = f"lanes:token:{self._market}:{client_id}" + (f":{account}" if account else "")
        return base, f"{base}:lock"

    async def token(self, lane: Lane, deadline: float | None, seller: str | None = None) -> str:
        account = await self.account(seller)
        held = self._held.get(account)
        if held is not None and time.monotonic() < held.fresh_until:
            return held.token
        # One coroutine per process and account goes to Redis; the rest reuse its answer.
        async with self._locks.setdefault(account, asyncio.Lock()):
            held = self._held.get(account)
            if held is not None and time.monotonic() < held.fresh_until:
                return held.token
            return await self._shared(account, lane, deadline)

    async def _shared(self, account: str, lane: Lane, deadline: float | None) -> str:
        key, lock = await self._keys(account)
        pause = 0.05
        while True:
            cached = await self._cached(account, key)
            if cached is not None:
                return cached
            owner = secrets.token_hex(8)
            if await self._redis_call(self._redis.set(lock, owner, nx=True, px=LOCK_MS)):
                try:
                    return await self._refresh(account, key, lane, deadline)
                finally:
                    await self._redis_call(self._compare_delete(keys=[lock], args=[owner]))
            if deadline is not None and time.monotonic() + pause > deadline:
                raise RetryLater(pause, f"{self._market}: waiting for another worker's token")
            await asyncio.sleep(pause + random.uniform(0, pause))
            pause = min(pause * 2, 1.0)

    async def _cached(self, account: str, key: str) -> str | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            value, pttl = await self._redis_call(pipe.execute())
        if value is None or pttl <= 0:
            return None
        token = bytes(value).decode()
        self._held[account] = _Held(token, time.monotonic() + pttl / 1000)
        return token

    async def _refresh(self, account: str, key: str, lane: Lane, deadline: float | None) -> str:
        # Another worker may have refreshed between our look and our lock.
        cached = await self._cached(account, key)
        if cached is not None:
            return cached
        client_id = (await self._credentials.get("client_id")).get_secret_value()
        secret = (await self._credentials.get("client_secret")).get_secret_value()
        timestamp = int(time.time() * 1000) - CLOCK_SKEW_MS
        try:
            sign = await asyncio.to_thread(client_secret_sign, client_id, secret, timestamp)
        except ValueError as exc:
            raise PermanentError(
                f"client_secret is not a bcrypt salt ($2a$...): {exc}", market=self._market
            ) from None
        form = {
            "client_id": client_id,
            "timestamp": str(timestamp),
            "client_secret_sign": sign,
            "grant_type": "client_credentials",
            "type": self._token_type,
        }
        if account:
            form["account_id"] = account
        answer = await self._fetch(form, lane, deadline)
        try:
            token = str(answer["access_token"])
            expires_in = float(answer["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise PermanentError(
                "token answer lacks access_token/expires_in", market=self._market, endpoint="token"
            ) from None
        self.fetched += 1
        # Refresh inside the last 30 minutes (or half of a short-lived token's life).
        margin = min(REFRESH_BEFORE_S, expires_in / 2)
        lifetime_ms = max(1_000, round((expires_in - margin) * 1000))
        await self._redis_call(self._redis.set(key, token, px=lifetime_ms))
        self._held[account] = _Held(token, time.monotonic() + lifetime_ms / 1000)
        log.info("naver.token_refreshed", market=self._market, expires_in=expires_in)
        return token

    async def forget(self, seller: str | None) -> None:
        """Drop the seller's token here and in Redis (only if Redis still holds that very
        token: another worker may already have replaced it)."""
        account = await self.account(seller)
        held = self._held.pop(account, None)
        if held is not None:
            key, _lock = await self._keys(account)
            await self._redis_call(self._compare_delete(keys=[key], args=[held.token]))

    async def _redis_call(self, pending: Awaitable[Any]) -> Any:
        try:
            return await pending
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(
                f"{self._market} token cache: redis unavailable: {exc}"
            ) from exc


class NaverAuth:
    """`Authorization: Bearer <token>` from the seller's (or the app's) token."""

    def __init__(self, tokens: NaverTokens) -> None:
        self.tokens = tokens

    async def prepare(self, seller: str | None, lane: Lane, deadline: float | None) -> Signer:
        token = await self.tokens.token(lane, deadline, seller)
        headers = {"Authorization": f"Bearer {token}"}

        def signer(method: str, path: str, query: str) -> dict[str, str]:
            return headers

        return signer

    async def invalidate(self, seller: str | None) -> bool:
        """A 401 may mean the token was revoked: fetch a new one once."""
        await self.tokens.forget(seller)
        return True
