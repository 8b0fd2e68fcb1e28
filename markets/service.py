"""`Markets`: the one entry point the worker uses to run a job against a market."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import aiohttp
import redis.asyncio as aioredis
import structlog
from pydantic import ValidationError

from lanes.config import describe_validation_error
from lanes.errors import ConfigError
from lanes.limiter import Limiter
from lanes.policy import Lane
from lanes.resource import AsyncResource
from lanes.settings import Settings
from markets.auth import Auth
from markets.client import MarketClient, endpoint_limits, send_check_trace
from markets.config import Config, MarketConfig
from markets.credentials import (
    Credentials,
    CredentialSource,
    credential_source,
    held,
    sellers_holding,
)
from markets.errors import PermanentError, TransientError
from markets.jobs import CALL, CallPayload, JobContext, JobSpec, Payload
from markets.market import AuthSetup
from markets.open_orders import OpenOrders
from markets.registry import AUTH_MARKETS, AUTH_SCHEMES, JOB_KINDS, market_of
from markets.request import JobRequest, JobResult
from markets.retry import Backoff
from markets.watermark import Watermark, Watermarks

__all__ = [
    "JOB_KINDS",
    "LANE_POLICY",
    "CheckedJob",
    "Markets",
    "credentials_source",
    "missing_credentials",
    "validate_job",
]

log = structlog.get_logger("markets")


class _Default(Enum):
    LANE_POLICY = "the lane policy's max_attempts"


LANE_POLICY = _Default.LANE_POLICY


def _market_of(config: Config, name: str) -> MarketConfig:
    market = config.markets.get(name)
    if market is None:
        known = ", ".join(sorted(config.markets)) or "none"
        raise PermanentError(f"unknown market {name!r} (configured: {known})", market=name)
    return market


def _spec(config: Config, request: JobRequest) -> JobSpec:
    market = _market_of(config, request.market)
    if request.kind == "call":
        return CALL
    built_in = market_of(market)
    jobs = built_in.jobs if built_in is not None else {}
    spec = jobs.get(request.kind)
    if spec is None:
        offered = ", ".join(["call", *jobs])
        raise PermanentError(
            f"kind {request.kind!r} is not offered by this market (offered: {offered})",
            market=request.market,
        )
    return spec


@dataclass(frozen=True, slots=True)
class CheckedJob:
    """A request judged against the config once: its spec, its validated payload, and
    whether it changes something at the market (ship, answer, update, a non-GET call).
    `Markets.run` runs it as it is, on every attempt, without checking it again."""

    request: JobRequest
    spec: JobSpec
    payload: Payload
    side_effect: bool


def validate_job(config: Config, request: JobRequest) -> CheckedJob:
    """The job checked, or `PermanentError` (one line) for an unknown market, kind or
    endpoint, or a bad payload. Pure: no I/O, no client, no Redis."""
    spec = _spec(config, request)
    try:
        payload = spec.model.model_validate(request.payload)
    except ValidationError as exc:
        raise PermanentError(
            describe_validation_error(exc, f"{request.kind} payload"), market=request.market
        ) from None
    market = _market_of(config, request.market)
    if isinstance(payload, CallPayload):
        called, _ = endpoint_limits(request.market, market, payload.endpoint, request.seller)
        side_effect = called.method != "GET"
    else:
        for endpoint in spec.endpoints:
            endpoint_limits(request.market, market, endpoint, request.seller)
        side_effect = spec.side_effect
    return CheckedJob(request, spec, payload, side_effect)


def _source(settings: Settings, name: str, market: MarketConfig) -> CredentialSource:
    """The market's credential source (`options.credentials`, env by default)."""
    wanted = name.casefold()
    found = {
        key: secrets for key, secrets in settings.credentials.items() if key.casefold() == wanted
    }
    return credential_source(market.options.get("credentials", "env"), found)


def credentials_source(settings: Settings, config: Config, name: str) -> CredentialSource:
    """Market `name`'s credential source (for listing its sellers)."""
    return _source(settings, name, config.market(name))


def missing_credentials(config: Config, settings: Settings, name: str) -> list[str]:
    """Where to set each credential market `name`'s auth scheme reads and its source lacks
    (empty: nothing missing): each application key market-wide; each seller key for every
    seller that has some of them (or, none having any, per seller: `<SELLER>`). Env and
    file sources are read; AWS ones are fetched per job (a seller's missing key stays that
    job's permanent error). A bad source spec or an unreadable file is a `ConfigError`.
    No network I/O."""
    market = config.market(name)
    scheme = AUTH_MARKETS.get(market.auth)
    if scheme is None:
        return []
    source = _source(settings, name, market)
    missing = [
        source.where(name, None, key)
        for key in scheme.app_keys
        if held(source, name, key, sellers=False) is False
    ]
    seller_keys = scheme.seller_keys(market.options)
    sellers = sellers_holding(source, name, seller_keys) if seller_keys else None
    if sellers is not None and not sellers:
        missing += [source.where(name, "<SELLER>", key) for key in seller_keys]
    for seller, keys in sorted((sellers or {}).items()):
        missing += [source.where(name, seller, key) for key in seller_keys if key not in keys]
    return missing


class Markets(AsyncResource):
    """Market clients on one aiohttp session (owned unless injected), and the jobs they run."""

    def __init__(
        self,
        config: Config,
        settings: Settings,
        limiter: Limiter,
        redis: aioredis.Redis,
        *,
        session: aiohttp.ClientSession | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self._settings = settings
        self._limiter = limiter
        self._redis = redis
        self._session = session
        self._owns_session = session is None
        self._backoff = backoff or Backoff()
        self._clients: dict[str, MarketClient] = {}
        self._watermarks = Watermarks(redis)
        self._open_orders = OpenOrders(redis)

    async def _close(self) -> None:
        """Close the session if this object opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()

    def _market(self, name: str) -> MarketConfig:
        return _market_of(self.config, name)

    def _credentials(self, name: str, market: MarketConfig) -> Credentials:
        try:
            source = _source(self._settings, name, market)
        except ConfigError as exc:
            raise PermanentError(str(exc), market=name) from None
        return Credentials(name, source)

    def client(self, name: str) -> MarketClient:
        """The client of market `name` (made on first use)."""
        client = self._clients.get(name)
        if client is None:
            if self._closed:
                raise RuntimeError("Markets is closed")
            market = self._market(name)
            if self._session is None:
                self._session = aiohttp.ClientSession(trace_configs=[send_check_trace()])
            built_in = market_of(market)
            client = MarketClient(
                name,
                market,
                self._session,
                self._limiter,
                seller_path=built_in.seller_path if built_in else None,
            )
            client.auth = self._auth(name, market, client)
            self._clients[name] = client
        return client

    def _auth(self, name: str, market: MarketConfig, client: MarketClient) -> Auth:
        factory = AUTH_SCHEMES.get(market.auth)
        if factory is None:
            raise PermanentError(f"unknown auth scheme {market.auth!r}", market=name)
        setup = AuthSetup(name, market, self._credentials(name, market), self._redis, client)
        return factory(setup)

    def check(self, request: JobRequest) -> CheckedJob:
        """The job checked (`validate_job`), or `PermanentError` (one line). No I/O."""
        return validate_job(self.config, request)

    async def run(
        self,
        job: CheckedJob | JobRequest,
        lane: Lane,
        *,
        deadline: float | None = None,
        max_attempts: int | Literal[_Default.LANE_POLICY] | None = LANE_POLICY,
        resumed: bool = False,
    ) -> JobResult:
        """Run the job in `lane` (a bare `JobRequest` is checked first; a `CheckedJob` is
        not checked again); `deadline` is a `time.monotonic()` moment; `resumed`: an
        earlier attempt may have landed, so side effects check first (`JobContext.resumed`).

        Raises `PermanentError` (never retried), `AttemptsExhausted` (a lane with
        max_attempts ran out), `RetryLater` (the deadline came first).
        """
        checked = job if isinstance(job, CheckedJob) else self.check(job)
        request, spec, payload = checked.request, checked.spec, checked.payload
        attempts = (
            self.config.lanes[lane].max_attempts if max_attempts is LANE_POLICY else max_attempts
        )
        context = JobContext(
            client=self.client(request.market),
            seller=request.seller,
            lane=lane,
            deadline=deadline,
            max_attempts=attempts,
            backoff=self._backoff,
            watermarks=self._watermarks,
            open_orders=self._open_orders,
            resumed=resumed,
        )
        started = time.monotonic()
        data = await spec.run(context, payload)
        log.debug(
            "market.job_done",
            market=request.market,
            kind=request.kind,
            seller=request.seller,
            lane=lane.value,
            message_id=request.id,
            calls=context.calls,
            seconds=round(time.monotonic() - started, 3),
        )
        return JobResult(
            kind=request.kind,
            market=request.market,
            seller=request.seller,
            data=data,
            calls=context.calls,
            watermark=context.watermark,
        )

    async def delivered(self, record: Mapping[str, Any]) -> None:
        """The result `record` reached the sink: move the watermark it carries. A failure
        here only means the next run reads that window again (logged, not raised)."""
        mark = Watermark.from_record(record.get("watermark"))
        if mark is None:
            return
        try:
            await self._watermarks.advance(
                str(record.get("market")), str(record.get("seller")), mark.what, mark.until
            )
        except TransientError as exc:
            log.warning("market.watermark_not_moved", error=str(exc), what=mark.what)
