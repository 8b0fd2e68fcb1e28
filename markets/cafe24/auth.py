"""Cafe24 OAuth per mall: access tokens shared through Redis, rotating refresh tokens kept
durably, one refresh per mall at a time across every worker.

Each mall (the message's seller) installed the app and holds its own refresh token in
the seller's credential source (`markets/cafe24/refresh_store.py`). An access token lives
about two hours; the refresh token two weeks, and Cafe24 issues a new one on every
refresh while the old one stops working [developers.cafe24.com, "Issuing the refresh
token"]. So a refresh is a one-way door, and:

- one refresh per mall at a time: a Redis lock (SET NX PX with an owner token, deleted
  only by its owner) across processes, one task per mall inside a process;
- the new refresh token is written to the durable store (compare-and-swap on the token
  used: the fence a writer whose lock expired cannot pass) before the access token is
  cached and used; the entry keeps the token it replaced (`previous_refresh_token`);
- a refresh runs in a task of its own that no job's deadline or cancellation stops: an
  answer that comes after the job gave up is still written, so the rotated token is
  never lost on our side;
- Redis holds only access tokens, a lock and a marker: a flush costs one refresh, never a
  refresh token (the durable store is the truth);
- a refresh token Cafe24 refuses (`invalid_grant`) after the store was read again (another
  writer may have moved on) is a `PermanentError` naming the mall ("reinstall the app"),
  recorded once in the store and in Redis so later jobs fail fast with the same reason.

What cannot be recovered: an answer lost on the wire after Cafe24 rotated the token
(Cafe24 documents no grace for the old one). That refusal's reason says so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
import structlog

from lanes.policy import Lane
from markets.auth import Signer, bearer
from markets.cafe24.jobs import KST
from markets.cafe24.refresh_store import RefreshStore, Stored, fingerprint
from markets.credentials import Credentials
from markets.errors import PermanentError, RetryLater, TransientError
from markets.jobs import maybe_landed
from markets.token_cache import TokenCache

__all__ = ["Cafe24Auth", "Cafe24Tokens", "TokenFetch"]

log = structlog.get_logger("markets.cafe24.auth")

# (mall, form fields, headers, lane) -> the token endpoint's JSON answer
TokenFetch = Callable[[str, dict[str, str], dict[str, str], Lane], Awaitable[Any]]

REFRESH_BEFORE_S = 5 * 60  # an access token is renewed this long before it expires
# Longer than the token call's timeout plus the durable write: the lock never lapses
# while its holder may still write.
LOCK_MS = 120_000
MARKER_MS = 10 * 60 * 1000  # a refused mall fails fast this long before the store is read again
UNCERTAIN_MS = 24 * 3600 * 1000
_WRITES = (0.05, 0.2, 1.0)  # pauses between attempts to write the new refresh token


def _lifetime_s(answer: dict[str, Any]) -> float:
    """Seconds the access token is good for: `expires_at` (Cafe24's local time, no offset)
    or `expires_in`."""
    if "expires_in" in answer:
        return float(answer["expires_in"])
    moment = datetime.fromisoformat(str(answer["expires_at"]))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=KST)
    return (moment - datetime.now(KST)).total_seconds()


class Cafe24Tokens:
    """The access tokens of one Cafe24 app, one per mall; refreshes guarded as above."""

    def __init__(
        self,
        market: str,
        redis: aioredis.Redis,
        credentials: Credentials,
        store: Callable[[], RefreshStore],
        fetch: TokenFetch,
    ) -> None:
        self._market = market
        self._redis = redis
        self._cache = TokenCache(market, redis)
        self._credentials = credentials
        self._make_store = store
        self._store: RefreshStore | None = None
        self._fetch = fetch
        self._refused: dict[str, tuple[float, str]] = {}
        self._tasks: dict[str, asyncio.Task[str]] = {}
        self._unsaved: dict[str, tuple[str, Stored]] = {}
        self.refreshed = 0  # refreshes this process made

    def store(self) -> RefreshStore:
        if self._store is None:
            self._store = self._make_store()
        return self._store

    async def _keys(self, mall: str) -> tuple[str, str, str, str]:
        client_id = (await self._credentials.get("client_id")).get_secret_value()
        base = f"lanes:token:{self._market}:{client_id}:{mall}"
        return base, f"{base}:lock", f"{base}:refused", f"{base}:uncertain"

    def _refusal(self, mall: str, reason: str) -> PermanentError:
        return PermanentError(reason, market=self._market, endpoint="token")

    async def token(self, mall: str, lane: Lane, deadline: float | None) -> str:
        """The mall's access token; refreshed (once for every worker) when none is cached."""
        if not mall:
            raise PermanentError(
                "Cafe24 calls need the message's seller (the mall id)", market=self._market
            )
        held = self._cache.held(mall)
        if held is not None:
            return held
        refused = self._refused.get(mall)
        if refused is not None and time.monotonic() < refused[0]:
            raise self._refusal(mall, refused[1])
        task = self._tasks.get(mall)
        if task is None or task.done():
            task = asyncio.create_task(self._shared(mall, lane), name=f"cafe24-token-{mall}")
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._tasks[mall] = task
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            # Shielded: a job that stops waiting does not stop the refresh it started.
            return await asyncio.wait_for(asyncio.shield(task), remaining)
        except TimeoutError:
            raise RetryLater(
                1.0, f"{self._market}: mall {mall}'s token refresh still running"
            ) from None

    async def _shared(self, mall: str, lane: Lane) -> str:
        key, lock, marker, _uncertain = await self._keys(mall)
        pause = 0.05
        while True:
            cached = await self._cache.cached(mall, key)
            if cached is not None:
                return cached
            reason = await self._cache.call(self._redis.get(marker))
            if reason is not None:
                text = bytes(reason).decode()
                self._refused[mall] = (time.monotonic() + MARKER_MS / 1000, text)
                raise self._refusal(mall, text)
            fetched = await self._cache.under_lock(
                lock, LOCK_MS, lambda: self._refresh(mall, key, lane)
            )
            if fetched is not None:
                return fetched
            await asyncio.sleep(pause + random.uniform(0, pause))
            pause = min(pause * 2, 1.0)

    async def _refresh(self, mall: str, key: str, lane: Lane) -> str:
        # Another worker may have refreshed between our look and our lock.
        cached = await self._cache.cached(mall, key)
        if cached is not None:
            return cached
        store = self.store()
        unsaved = self._unsaved.pop(mall, None)
        if unsaved is not None:
            await self._save(mall, *unsaved)
        tried: set[str] = set()
        while True:
            stored = await store.read(mall)
            if stored is None:
                raise self._refusal(
                    mall,
                    f"mall {mall!r} has no refresh token (set {store.where(mall)}): "
                    "install the app for this mall",
                )
            reason = stored.refused_reason
            if reason is not None:
                await self._remember_refused(mall, reason)
                raise self._refusal(mall, reason)
            candidates = [stored.refresh_token]
            if stored.previous_refresh_token:
                candidates.append(stored.previous_refresh_token)
            using = next((each for each in candidates if each not in tried), None)
            if using is None:
                raise await self._mark_refused(mall, stored)
            tried.add(using)
            try:
                answer = await self._exchange(mall, using, lane)
            except PermanentError as exc:
                if exc.code != "invalid_grant":
                    raise
                # Refused: the store may have moved on (another writer); read it again.
                continue
            return await self._accept(mall, key, stored.refresh_token, using, answer)

    async def _exchange(self, mall: str, refresh_token: str, lane: Lane) -> dict[str, Any]:
        client_id = (await self._credentials.get("client_id")).get_secret_value()
        secret = (await self._credentials.get("client_secret")).get_secret_value()
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        try:
            answer = await self._fetch(mall, form, {"Authorization": f"Basic {basic}"}, lane)
        except TransientError as exc:
            if maybe_landed(exc):
                # The answer may be lost after Cafe24 rotated the token: say so if it is
                # refused later.
                *_, uncertain = await self._keys(mall)
                await self._cache.call(self._redis.set(uncertain, "1", px=UNCERTAIN_MS))
            raise
        if (
            not isinstance(answer, dict)
            or not answer.get("access_token")
            or not answer.get("refresh_token")
        ):
            raise PermanentError(
                "token answer lacks access_token/refresh_token",
                market=self._market,
                endpoint="token",
            )
        return answer

    async def _accept(
        self, mall: str, key: str, current: str, used: str, answer: dict[str, Any]
    ) -> str:
        self.refreshed += 1
        new = Stored(str(answer["refresh_token"]), previous_refresh_token=used)
        await self._save(mall, current, new)
        token = str(answer["access_token"])
        try:
            lifetime = _lifetime_s(answer)
        except (KeyError, TypeError, ValueError):
            lifetime = 3600.0
        await self._cache.keep(mall, key, token, lifetime, REFRESH_BEFORE_S)
        self._refused.pop(mall, None)
        log.info("cafe24.token_refreshed", market=self._market, mall=mall, expires_in=lifetime)
        return token

    async def _save(self, mall: str, expected: str, new: Stored) -> None:
        """Write the new refresh token durably, a few tries; kept in this process for the next
        refresh when the store stays unreachable (the access token is still returned)."""
        store = self.store()
        for pause in (*_WRITES, None):
            try:
                written = await store.swap(mall, expected, new)
            except TransientError as exc:
                if pause is None:
                    self._unsaved[mall] = (expected, new)
                    log.error("cafe24.refresh_token_unsaved", mall=mall, error=str(exc))  # noqa: TRY400
                    raise
                await asyncio.sleep(pause)
                continue
            if not written:
                # The entry changed under us (the seller reinstalled): keep theirs.
                log.warning("cafe24.refresh_token_changed_meanwhile", mall=mall)
            return

    async def _mark_refused(self, mall: str, stored: Stored) -> PermanentError:
        *_, uncertain = await self._keys(mall)
        lost = await self._cache.call(self._redis.get(uncertain)) is not None
        cause = (
            "an earlier refresh's answer was lost after Cafe24 rotated the token"
            if lost
            else "the refresh token expired or was revoked"
        )
        reason = (
            f"mall {mall!r}: Cafe24 refused its refresh token ({cause}): reinstall the app "
            f"for this mall and put its new refresh token in {self.store().where(mall)}"
        )
        marked = Stored(
            stored.refresh_token,
            previous_refresh_token=stored.previous_refresh_token,
            refused=reason,
            refused_for=fingerprint(stored.refresh_token),
        )
        with contextlib.suppress(TransientError):
            await self.store().swap(mall, stored.refresh_token, marked)
        await self._remember_refused(mall, reason)
        log.error("cafe24.mall_refused", market=self._market, mall=mall, reason=reason)
        return self._refusal(mall, reason)

    async def _remember_refused(self, mall: str, reason: str) -> None:
        _key, _lock, marker, _uncertain = await self._keys(mall)
        await self._cache.call(self._redis.set(marker, reason, px=MARKER_MS))
        self._refused[mall] = (time.monotonic() + MARKER_MS / 1000, reason)

    async def forget(self, mall: str) -> None:
        """Drop the mall's access token here and in Redis (only if Redis still holds it)."""
        token = self._cache.drop(mall)
        if token is not None:
            key, *_ = await self._keys(mall)
            await self._cache.delete(key, token)


class Cafe24Auth:
    """`Authorization: Bearer <the mall's access token>`."""

    def __init__(self, tokens: Cafe24Tokens, api_version: str | None = None) -> None:
        self.tokens = tokens
        self._version = {"X-Cafe24-Api-Version": api_version} if api_version else {}

    async def prepare(self, seller: str | None, lane: Lane, deadline: float | None) -> Signer:
        return bearer(await self.tokens.token(seller or "", lane, deadline), self._version)

    async def invalidate(self, seller: str | None) -> bool:
        """A 401 may mean the access token was revoked: refresh once."""
        await self.tokens.forget(seller or "")
        return True
