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
import time
from collections.abc import Awaitable, Callable
from typing import Any

import bcrypt
import redis.asyncio as aioredis
import structlog

from lanes.policy import Lane
from markets.auth import Signer, bearer
from markets.credentials import Credentials
from markets.errors import PermanentError, RetryLater
from markets.token_cache import TokenCache

__all__ = ["NaverAuth", "NaverTokens", "TokenFetch", "client_secret_sign"]

log = structlog.get_logger("markets.naver.auth")

# (form fields, lane, deadline) -> the token endpoint's JSON answer
TokenFetch = Callable[[dict[str, str], Lane, float | None], Awaitable[Any]]

# Naver hands back the same token while it has 30 minutes or more left, so a
# refresh must happen inside those last 30 minutes to get a new one.
REFRESH_BEFORE_S = 30 * 60 - 60
LOCK_MS = 15_000
# The token's timestamp is checked against Naver's clock: stay a little behind it.
CLOCK_SKEW_MS = 3_000


def client_secret_sign(client_id: str, client_secret: str, timestamp_ms: int) -> str:
    """base64(bcrypt(f"{client_id}_{timestamp}", salt=client_secret)), as Naver defines it."""
    hashed = bcrypt.hashpw(f"{client_id}_{timestamp_ms}".encode(), client_secret.encode())
    return base64.b64encode(hashed).decode()


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
        self._cache = TokenCache(market, redis)
        self._credentials = credentials
        self._fetch = fetch
        self._token_type = token_type
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
        held = self._cache.held(account)
        if held is not None:
            return held
        # One coroutine per process and account goes to Redis; the rest reuse its answer.
        async with self._locks.setdefault(account, asyncio.Lock()):
            held = self._cache.held(account)
            if held is not None:
                return held
            return await self._shared(account, lane, deadline)

    async def _shared(self, account: str, lane: Lane, deadline: float | None) -> str:
        key, lock = await self._keys(account)
        pause = 0.05
        while True:
            cached = await self._cache.cached(account, key)
            if cached is not None:
                return cached
            fetched = await self._cache.under_lock(
                lock, LOCK_MS, lambda: self._refresh(account, key, lane, deadline)
            )
            if fetched is not None:
                return fetched
            if deadline is not None and time.monotonic() + pause > deadline:
                raise RetryLater(pause, f"{self._market}: waiting for another worker's token")
            await asyncio.sleep(pause + random.uniform(0, pause))
            pause = min(pause * 2, 1.0)

    async def _refresh(self, account: str, key: str, lane: Lane, deadline: float | None) -> str:
        # Another worker may have refreshed between our look and our lock.
        cached = await self._cache.cached(account, key)
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
        await self._cache.keep(account, key, token, expires_in, REFRESH_BEFORE_S)
        log.info("naver.token_refreshed", market=self._market, expires_in=expires_in)
        return token

    async def forget(self, seller: str | None) -> None:
        """Drop the seller's token here and in Redis (only if Redis still holds that very
        token: another worker may already have replaced it)."""
        account = await self.account(seller)
        token = self._cache.drop(account)
        if token is not None:
            key, _lock = await self._keys(account)
            await self._cache.delete(key, token)


class NaverAuth:
    """`Authorization: Bearer <token>` from the seller's (or the app's) token."""

    def __init__(self, tokens: NaverTokens) -> None:
        self.tokens = tokens

    async def prepare(self, seller: str | None, lane: Lane, deadline: float | None) -> Signer:
        return bearer(await self.tokens.token(lane, deadline, seller))

    async def invalidate(self, seller: str | None) -> bool:
        """A 401 may mean the token was revoked: fetch a new one once."""
        await self.tokens.forget(seller)
        return True
