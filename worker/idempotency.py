"""At most one side effect per job id (docs/DESIGN.md rule 11), across timeouts, kills and
Redis restarts.

One record per (market, seller, kind, id), stated: `claimed` (a worker holds
it, nothing sent yet) → `posting` (a request of the job has left) → `done`
(with the result). The holder keeps a short lease alive while it runs. A
delivery that finds:

- `done`: acknowledges with the recorded result (a duplicate);
- a live lease: comes back later (`ClaimBusy`, a wait);
- `posting` with no lease (the holder crashed mid-post, or gave up after a
  request without answer): the market may or may not have acted, so the new
  holder takes the claim over still `posting` and runs the job *resumed*
  (`Claim.resumed`): each side effect first checks what landed
  (markets.jobs.JobContext.effect), and posts again only where the check says
  it did not; where the market cannot tell, the job raises
  `markets.errors.OutcomeUnknown` and stops for a person (dead-lettered with
  that reason), never re-posted blindly.

"posting" is marked by an aiohttp trace hook just before a request of a
claimed job leaves, so a job that was still waiting for budget when it died
is simply claimed again. The same hook refuses a second request after one that
got no answer (a timeout) within one run (`CheckFirst`: the job is resumed on
the next attempt), and a claim lost (Redis restarted empty) is noticed there before every
changing request and stops the run (`ClaimLost`) instead of posting without a record.

Across a Redis restart (`restart_guard`, the worker's): a live holder puts its lost record
back within one refresh period, and a claim that finds no record in a Redis younger than
three such periods waits (`ClaimBusy`) instead of taking the record's absence at its word,
so a duplicate delivery finds the holder (and then its result), never an unclaimed job. A
holder that stops after its claim was lost leaves it "posting": the next run checks first.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from types import SimpleNamespace
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable, LanesError
from markets.errors import late_send

__all__ = ["CheckFirst", "Claim", "ClaimBusy", "ClaimLost", "IdempotencyGuard"]

_BUSY_RETRY_CAP = 3.0
_LOST_RETRY = 1.0
_REFRESH_CAP = 2.0  # seconds between a holder's lease refreshes, at most
_log = structlog.get_logger("worker.idempotency")
_holding: contextvars.ContextVar[Claim | None] = contextvars.ContextVar("lanes_claim", default=None)


def _script(name: str) -> str:
    return resources.files("worker").joinpath(name).read_text(encoding="utf-8")


class ClaimBusy(LanesError):
    """Another delivery of the same job holds the claim; try again in `retry_after` s."""

    def __init__(self, key: str, retry_after: float) -> None:
        super().__init__(f"job {key} is running elsewhere")
        self.retry_after = retry_after


class ClaimLost(LanesError):
    """Our claim vanished before anything was sent (Redis lost it): claim again shortly."""

    retry_after = _LOST_RETRY


class CheckFirst(LanesError):
    """A request of this run got no answer, so no other request of it leaves: the run stops,
    and the job is run again resumed (checking what landed first)."""


@dataclass(eq=False)
class Claim:
    """`begin`'s answer: a recorded result (`done`), or our claim and what its requests did."""

    key: str
    lease: str
    market: str
    token: str = ""
    done: dict[str, Any] | None = None
    posting: bool = False
    resumed: bool = False  # taken over from a holder that was posting: an attempt may have landed
    in_flight: int = 0
    landed: bool = False  # a changing request was answered 2xx
    unanswered: bool = False  # a request left and got no answer (timeout, lost connection)
    unsettled: bool = False  # ... and it was a changing one: the market may still act on it
    lost: bool = False  # another holder took the record: nothing more of this run leaves

    @property
    def uncertain(self) -> bool:
        """May the market have acted on a request of ours?"""
        return self.resumed or self.landed or self.unanswered or self.in_flight > 0


class IdempotencyGuard:
    """Claims and done records in Redis; a Redis failure raises `BudgetUnavailable`.

    `restart_guard`: a missing record is believed only in a Redis up for longer than
    `quarantine_seconds` (three refresh periods and a second), so a holder posting when
    Redis restarted empty has put its record back before a duplicate can claim the job.
    Only a Redis nobody else can have used (the tests' own) may leave it off.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl: int,
        claim_seconds: float,
        settle_seconds: float = 30.0,
        restart_guard: bool = False,
    ) -> None:
        self._redis = redis
        self._ttl = ttl
        self._lease_ms = max(1000, int(claim_seconds * 1000))
        self._settle_ms = round(settle_seconds * 1000)
        self.refresh_seconds = min(_REFRESH_CAP, self._lease_ms / 3000)
        self.quarantine_seconds = 3 * self.refresh_seconds + 1.0
        self.restart_guard = restart_guard
        self._claim = redis.register_script(_script("claim.lua"))
        self._posting = redis.register_script(_script("posting.lua"))
        self._refresh = redis.register_script(_script("refresh.lua"))
        self._abandon = redis.register_script(_script("abandon.lua"))
        self._drop_lease = redis.register_script(_script("drop_lease.lua"))

    @staticmethod
    def key(market: str, seller: str, kind: str, job_id: str) -> str:
        """The record's key: market, seller, kind and id (hashed: free text never breaks the
        `{market}` hash tag)."""
        digest = hashlib.sha256("\x1f".join((seller, kind, job_id)).encode()).hexdigest()[:40]
        return f"lanes:idem:{{{market}}}:{digest}"

    async def begin(self, market: str, seller: str, kind: str, job_id: str) -> Claim:
        """Claim the job (`resumed` when an earlier holder was posting and is gone), or return
        its recorded result.

        Raises `ClaimBusy` (held elsewhere) or `BudgetUnavailable` (Redis down).
        """
        key = self.key(market, seller, kind, job_id)
        claim = Claim(key=key, lease=f"{key}:lease", market=market, token=secrets.token_hex(8))
        try:
            quarantine_ms = round(self.quarantine_seconds * 1000) if self.restart_guard else 0
            state, detail = await self._claim(
                keys=[claim.key, claim.lease],
                args=[claim.token, self._lease_ms, self._ttl, quarantine_ms],
            )
        except RedisError as exc:
            raise BudgetUnavailable(f"idempotency store unreachable: {exc}") from exc
        state = state.decode() if isinstance(state, bytes) else str(state)
        if state == "done":
            claim.done = json.loads(detail)
            return claim
        if state == "busy":
            # The holder usually finishes well before its lease would lapse: look again soon.
            raise ClaimBusy(key, min(_BUSY_RETRY_CAP, max(1.0, int(detail) / 1000)))
        if state == "resumed":
            # Already "posting" under our token: the hook does not mark it again.
            claim.posting = claim.resumed = True
            _log.warning("idempotency.resumed", job_id=job_id)
        return claim

    async def finish(self, claim: Claim, result: dict[str, Any]) -> None:
        """Record the done result (replaces the claim, whoever holds it now). One round trip,
        no transaction: a lease left behind only lapses, as `begin` reads "done" first."""
        payload = "done:" + json.dumps(result, separators=(",", ":"), default=str)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(claim.key, payload, ex=self._ttl)
                pipe.delete(claim.lease)
                await pipe.execute()
        except RedisError as exc:
            raise BudgetUnavailable(f"idempotency store unreachable: {exc}") from exc

    async def abandon(self, claim: Claim) -> None:
        """Drop our claim (the market surely did not act); best effort: the lease lapses."""
        try:
            await self._abandon(keys=[claim.key, claim.lease], args=[claim.token])
        except RedisError:
            return

    async def give_up(self, claim: Claim) -> None:
        """Stop holding a claim whose request may have landed: the record stays "posting", so
        the next delivery takes it over and checks first (or, for a job whose market cannot
        tell, stops for a person); a record Redis lost is put back "posting" for that. At
        once, unless a changing request left without an answer (a timeout, a cancel): the
        market may still be acting on it, and a check now could miss it and post twice, so
        the lease is kept `settle_seconds` (the next delivery waits, `ClaimBusy`). Best
        effort (the lease lapses anyway)."""
        keep_ms = self._settle_ms if claim.unsettled else 0
        try:
            await self._drop_lease(
                keys=[claim.key, claim.lease], args=[claim.token, keep_ms, self._ttl]
            )
        except RedisError:
            return

    @asynccontextmanager
    async def held(self, claim: Claim) -> AsyncIterator[None]:
        """Run the body as the claim's holder: the lease is kept alive, and requests the body
        sends are watched by the trace hook (`trace_config`)."""
        reset = _holding.set(claim)
        stop = asyncio.Event()
        refresher = asyncio.create_task(self._refresh_forever(claim, stop))
        try:
            yield
        finally:
            _holding.reset(reset)
            # The flag as well as the cancel: redis-py may turn a cancel that hits a command
            # into a connection error, which the loop would take for a Redis outage.
            stop.set()
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    async def _refresh_forever(self, claim: Claim, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh(claim)
            except RedisError:
                continue  # Redis is back soon; the job itself goes on

    async def refresh(self, claim: Claim) -> None:
        """Keep the lease alive; put back a record Redis lost (a duplicate delivery then finds
        it held); note a record another holder took (`Claim.lost`)."""
        state = "posting" if claim.posting else "claimed"
        answer = await self._refresh(
            keys=[claim.key, claim.lease], args=[claim.token, self._lease_ms, state, self._ttl]
        )
        if answer == 2:
            _log.warning("idempotency.claim_restored", posting=claim.posting)
        elif not answer and not claim.lost:
            claim.lost = True
            _log.warning("idempotency.claim_lost", posting=claim.posting)

    # -- the trace hook: what the job's requests did ----------------------------------------

    def trace_config(self) -> aiohttp.TraceConfig:
        """Hooks for the markets' HTTP session: mark `posting` before a claimed job's request
        leaves, and note how each request ended."""
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._request_start)
        config.on_request_end.append(self._request_end)
        config.on_request_exception.append(self._request_exception)
        return config

    async def _request_start(
        self,
        _session: aiohttp.ClientSession,
        _ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        claim = _holding.get()
        if claim is None:
            return
        if claim.unanswered:
            # A request of this run got no answer: sending again could do it twice. The next
            # run is resumed: it checks what landed before anything is posted again.
            raise CheckFirst("an earlier request of this job got no answer")
        if claim.lost:
            raise ClaimLost(f"claim {claim.key} was taken by another holder")
        if not claim.posting or params.method != "GET":
            # Before the first request and before every changing one: is the claim still ours?
            try:
                ours = await self._posting(
                    keys=[claim.key, claim.lease], args=[claim.token, self._lease_ms, self._ttl]
                )
            except RedisError as exc:
                raise BudgetUnavailable(f"idempotency store unreachable: {exc}") from exc
            if not ours:
                claim.lost = True
                raise ClaimLost(f"claim {claim.key} was lost before posting")
            claim.posting = True
        claim.in_flight += 1

    async def _request_end(
        self,
        _session: aiohttp.ClientSession,
        _ctx: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        claim = _holding.get()
        if claim is None:
            return
        claim.in_flight = max(0, claim.in_flight - 1)
        if params.method != "GET" and 200 <= params.response.status < 300:
            claim.landed = True

    async def _request_exception(
        self,
        _session: aiohttp.ClientSession,
        _ctx: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        claim = _holding.get()
        if claim is None:
            return
        if late_send(params.exception) is not None:
            claim.in_flight = max(0, claim.in_flight - 1)  # stopped before a byte left
            return
        if isinstance(params.exception, LanesError):
            return  # our own refusal above: nothing left
        claim.in_flight = max(0, claim.in_flight - 1)
        if not isinstance(params.exception, aiohttp.ClientConnectorError):
            claim.unanswered = True  # sent, and no answer: the market may have acted
            claim.unsettled = claim.unsettled or params.method != "GET"
