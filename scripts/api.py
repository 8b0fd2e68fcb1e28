"""The HTTP API: jobs in, per-order collection now, job status, health (`lanes api`).

One ASGI app (FastAPI, OpenAPI page at /docs) served by uvicorn (`lanes api`)
and, in the same image, as a Lambda behind API Gateway through Mangum
(`scripts.api.handler`). Every route but /healthz and the docs needs an API
key (`X-API-Key` or `Authorization: Bearer`), compared in constant time; keys
never reach a log line or an answer (docs/DESIGN.md rule 8).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Path, Query, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from mangum import Mangum
from redis.exceptions import RedisError

import markets
from lanes.config import Config
from lanes.errors import BudgetUnavailable, ConfigError
from lanes.limiter import Limiter
from lanes.logs import configure_logging
from lanes.policy import Lane
from lanes.resource import AsyncResource
from lanes.settings import Settings, load_settings
from lanes.store import RedisStore
from markets import JobRequest, Markets, PermanentError, RetryLater, TransientError
from scripts.api_jobs import (
    BadRequest,
    IdempotencyConflict,
    Refused,
    Sender,
    check_jobs,
    fingerprint,
    idempotency_key,
    new_job_id,
    send_jobs,
    send_once,
)
from scripts.api_models import (
    Collected,
    CollectQueued,
    JobRecord,
    JobsAccepted,
    JobsRefused,
    JobState,
    Problem,
)
from scripts.status import snapshot
from scripts.validate import JobValidator
from worker.idempotency import IdempotencyGuard
from worker.runtime import TRACK_TTL
from worker.sqs import QueueMissing, SqsClient, SqsError
from worker.tracking import JobTracker

__all__ = ["DEFAULT_WAIT", "MAX_WAIT", "ApiRuntime", "create_app", "handler"]

log = structlog.get_logger("api")

DEFAULT_WAIT = 10.0
# API Gateway gives an integration 29 s: an answer must be on its way before that.
MAX_WAIT = 25.0
# The payload field a per-product collection's path id fills, per catalogue.
PRODUCT_ID_FIELDS = {"coupang": "seller_product_id", "naver": "origin_product_no"}
_CLAIM_SECONDS = 30.0


def _region(settings: Settings) -> str | None:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None and settings.sqs_endpoint_url:
        return "us-east-1"  # a local endpoint (moto) accepts any region
    return region


class ApiRuntime(AsyncResource):
    """What the app holds open while it serves: Redis, SQS, the markets and the checks."""

    def __init__(self, settings: Settings, config: Config) -> None:
        self.settings = settings
        self.config = config
        self._stack = AsyncExitStack()
        self.store = RedisStore(settings.redis_url)
        self.sqs = SqsClient(endpoint_url=settings.sqs_endpoint_url, region=_region(settings))
        self.limiter = Limiter(self.store.client, config.lanes)
        self.markets = Markets(config, settings, self.limiter, self.store.client)
        self.validators = {name: JobValidator(config, name) for name in config.markets}
        self.guard = IdempotencyGuard(
            self.store.client, ttl=settings.idempotency_ttl, claim_seconds=_CLAIM_SECONDS
        )
        self.records = JobTracker(self.store.client, ttl=TRACK_TTL)
        self.sender = Sender(self.sqs, settings.queue_prefix, self.records)
        self._stack.push_async_callback(self.store.aclose)
        self._stack.push_async_callback(self.sqs.aclose)
        self._stack.push_async_callback(self.limiter.aclose)
        self._stack.push_async_callback(self.markets.aclose)

    async def _close(self) -> None:
        await self._stack.aclose()


async def _store(runtime: ApiRuntime, record: JobRecord) -> JobRecord:
    """Write `record` as the job's status (the worker's format); the record as stored."""
    fields = record.model_dump(mode="json", exclude_none=True)
    (stored,) = await runtime.records.update_many([fields])
    return JobRecord.model_validate(stored)


def _runtime(request: Request) -> ApiRuntime:
    runtime: ApiRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[ApiRuntime, Depends(_runtime)]


def _authenticator(settings: Settings, *, insecure_local: bool) -> Callable[..., Awaitable[None]]:
    keys = [key.get_secret_value().encode() for key in settings.api_keys]
    if not keys and not insecure_local:
        raise ConfigError(
            "no API keys: set LANES_API_KEYS (comma-separated or a JSON list), "
            "or serve this machine only with --insecure-local"
        )

    async def authenticate(
        api_key: Annotated[str | None, Security(APIKeyHeader(name="X-API-Key", auto_error=False))],
        bearer: Annotated[
            HTTPAuthorizationCredentials | None, Security(HTTPBearer(auto_error=False))
        ],
    ) -> None:
        if not keys:
            return  # --insecure-local
        given = (api_key or (bearer.credentials if bearer else "")).encode()
        matched = False
        for key in keys:  # every key compared: the time does not tell which one matched
            matched |= hmac.compare_digest(given, key)
        if not matched:
            log.warning("api.unauthorized", reason="missing key" if not given else "wrong key")
            raise HTTPException(
                401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"}
            )

    return authenticate


# --- the routes -------------------------------------------------------------------------

LaneQuery = Annotated[Lane, Query(description="the lane the job runs in")]


async def submit_jobs(
    runtime: Runtime,
    lane: Annotated[Lane, Query(description="the lane queue the jobs go to")],
    jobs: Annotated[
        dict[str, Any] | list[Any],
        Body(description="one job (a message body object) or a list of them"),
    ],
    idempotency: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Check every job as `lanes enqueue` does, then send them all (nothing if one is bad)."""
    batch = jobs if isinstance(jobs, list) else [jobs]
    try:
        envelopes = check_jobs(batch, runtime.validators)
        key = idempotency_key(idempotency, batch)
    except Refused as exc:
        refused = JobsRefused(detail=str(exc), errors=exc.problems)
        return JSONResponse(refused.model_dump(), status_code=422)
    except BadRequest as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    async def send() -> JobsAccepted:
        return await send_jobs(runtime.sender, lane, envelopes)

    replayed = False
    if key is None:
        answer = await send()
    else:
        answer, replayed = await send_once(runtime.guard, key, fingerprint(lane, batch), send)
    log.info("api.jobs_sent", lane=lane.value, count=answer.count, replayed=replayed)
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JSONResponse(answer.model_dump(), status_code=202, headers=headers)


async def _collect(
    runtime: ApiRuntime, kind: str, target: Collect, payload: dict[str, Any]
) -> JSONResponse:
    """Run the job now through the budget in `lane`; past `wait`, enqueue it (202)."""
    market, seller, lane, wait = target.market, target.seller, target.lane, target.wait
    if market not in runtime.validators:
        raise HTTPException(404, f"unknown market {market!r}")
    job_id = new_job_id()
    body = {"kind": kind, "market": market, "seller": seller, "payload": payload, "id": job_id}
    try:
        (envelope,) = check_jobs([body], runtime.validators)
    except Refused as exc:
        refused = JobsRefused(detail=str(exc), errors=exc.problems)
        return JSONResponse(refused.model_dump(), status_code=422)
    record = JobRecord(
        id=job_id, state=JobState.RUNNING, market=market, lane=lane.value, kind=kind, seller=seller
    )
    request = JobRequest(kind=kind, market=market, seller=seller, payload=payload, id=job_id)
    retry_after: float | None = None
    started = time.monotonic()
    try:
        # The deadline lets the budget refuse at once what cannot start in time; the
        # timeout cancels a slow market call (a cancelled wait hands its reservation back).
        async with asyncio.timeout(wait):
            result = await runtime.markets.run(request, lane, deadline=started + wait)
    except RetryLater as exc:
        retry_after = exc.retry_after
    except (TimeoutError, TransientError):
        pass  # past the bound, or out of attempts: the worker takes it from here
    except PermanentError as exc:
        failed = await _store(
            runtime, record.model_copy(update={"state": JobState.FAILED, "reason": str(exc)})
        )
        return JSONResponse(failed.model_dump(exclude_none=True), status_code=502)
    else:
        done = await _store(
            runtime,
            record.model_copy(
                update={"state": JobState.DONE, "result": result.data, "calls": result.calls}
            ),
        )
        collected = Collected(**done.model_dump())
        log.info("api.collected", market=market, kind=kind, lane=lane.value,
                 seconds=round(time.monotonic() - started, 3))  # fmt: skip
        return JSONResponse(collected.model_dump(exclude_none=True))
    accepted = await send_jobs(runtime.sender, lane, [envelope])
    queued = CollectQueued(
        **record.model_dump(exclude={"state", "updated_at", "message_id"}),
        state=JobState.QUEUED,
        message_id=accepted.jobs[0].message_id,
        retry_after=retry_after,
    )
    log.info("api.collect_queued", market=market, kind=kind, lane=lane.value, wait=wait)
    return JSONResponse(queued.model_dump(exclude_none=True), status_code=202)


Wait = Annotated[
    float, Query(gt=0, le=MAX_WAIT, description="seconds to wait for the answer before queueing")
]
IdField = Annotated[
    str | None, Query(pattern=r"^[a-z_]{1,40}$", description="the payload field the id fills")
]


@dataclass
class Collect:
    """What a per-order or per-product collection names besides the id (path and query)."""

    market: Annotated[str, Path()]
    seller: Annotated[str, Path()]
    lane: LaneQuery = Lane.HIGH
    wait: Wait = DEFAULT_WAIT
    field: IdField = None


CollectParams = Annotated[Collect, Depends()]


async def collect_order(
    runtime: Runtime, target: CollectParams, order_id: Annotated[str, Path()]
) -> JSONResponse:
    """`collect_order` now through the shared budget; 202 with the job id past `wait`."""
    payload = {target.field or "order_id": order_id}
    return await _collect(runtime, "collect_order", target, payload)


async def collect_product(
    runtime: Runtime, target: CollectParams, product_id: Annotated[str, Path()]
) -> JSONResponse:
    """`get_product` now through the shared budget; 202 with the job id past `wait`."""
    known = runtime.config.markets.get(target.market)
    catalogue = (known.catalogue if known else None) or ""
    payload = {target.field or PRODUCT_ID_FIELDS.get(catalogue, "product_id"): product_id}
    return await _collect(runtime, "get_product", target, payload)


async def job_status(runtime: Runtime, job_id: Annotated[str, Path()]) -> JobRecord:
    """queued, running, done (with the result), failed or dead_lettered (with the reason)."""
    record = await runtime.records.get(job_id)
    if record is None:
        raise HTTPException(404, f"no job {job_id!r} (unknown, or its record expired)")
    return JobRecord.model_validate(record)


async def status(
    runtime: Runtime,
    market: Annotated[list[str] | None, Query(description="repeatable; default all")] = None,
) -> dict[str, Any]:
    """What `lanes status --json` shows: queue depths and live budget usage."""
    chosen = market or sorted(runtime.config.markets)
    for name in chosen:
        if name not in runtime.config.markets:
            raise HTTPException(404, f"unknown market {name!r}")
    state = await snapshot(
        runtime.sqs,
        runtime.store.client,
        runtime.limiter,
        runtime.config,
        prefix=runtime.settings.queue_prefix,
        markets=chosen,
    )
    return state.as_json()


async def healthz(runtime: Runtime) -> JSONResponse:
    """200 when Redis answers a ping, else 503 (no key needed)."""
    try:
        await runtime.store.client.ping()
    except (RedisError, OSError):
        return JSONResponse({"redis": "unavailable"}, status_code=503)
    return JSONResponse({"redis": "ok"})


# --- errors and the access log ----------------------------------------------------------


def _problem(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse(Problem(detail=detail).model_dump(), status_code=status, headers=headers)


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("api.redis_unavailable", error=str(exc))
    return _problem(503, "redis unavailable; try again shortly", **{"Retry-After": "1"})


async def _sqs_failed(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, QueueMissing):
        return _problem(503, f"{exc} (run `lanes provision`)")
    log.warning("api.sqs_failed", error=str(exc))
    return _problem(503, f"SQS failed: {exc}", **{"Retry-After": "1"})


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IdempotencyConflict)
    headers = {"Retry-After": f"{exc.retry_after:.0f}"} if exc.retry_after else {}
    return _problem(409, str(exc), **headers)


async def _access_log(request: Request, call_next: Any) -> Any:
    """One line per request: method, path, status, seconds (never a header or a query)."""
    started = time.monotonic()
    response = await call_next(request)
    log.info(
        "api.request",
        method=request.method,
        path=request.url.path,
        status=response.status_code,
        seconds=round(time.monotonic() - started, 4),
    )
    return response


# --- the app ----------------------------------------------------------------------------


def create_app(settings: Settings, config: Config, *, insecure_local: bool = False) -> FastAPI:
    """The app; its lifespan opens an `ApiRuntime` (no keys and not `insecure_local`:
    `ConfigError`)."""
    authenticate = _authenticator(settings, insecure_local=insecure_local)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with ApiRuntime(settings, config) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="lanes",
        summary="Jobs into the lane queues, market calls now through the shared budget.",
        version="1",
        lifespan=lifespan,
    )
    app.middleware("http")(_access_log)
    app.add_exception_handler(BudgetUnavailable, _unavailable)
    app.add_exception_handler(SqsError, _sqs_failed)
    app.add_exception_handler(IdempotencyConflict, _conflict)
    secured = [Depends(authenticate)]
    errors: dict[int | str, dict[str, Any]] = {401: {"model": Problem}}
    app.post(
        "/v1/jobs",
        status_code=202,
        dependencies=secured,
        response_model=JobsAccepted,
        responses={**errors, 409: {"model": Problem}, 422: {"model": JobsRefused}},
    )(submit_jobs)
    collect_responses: dict[int | str, dict[str, Any]] = {
        **errors,
        202: {"model": CollectQueued},
        422: {"model": JobsRefused},
        502: {"model": JobRecord},
    }
    app.post(
        "/v1/markets/{market}/sellers/{seller}/orders/{order_id}/collect",
        dependencies=secured,
        response_model=Collected,
        responses=collect_responses,
    )(collect_order)
    app.post(
        "/v1/markets/{market}/sellers/{seller}/products/{product_id}/collect",
        dependencies=secured,
        response_model=Collected,
        responses=collect_responses,
    )(collect_product)
    app.get("/v1/jobs/{job_id}", dependencies=secured, responses=errors)(job_status)
    app.get("/v1/status", dependencies=secured, responses=errors)(status)
    app.get("/healthz")(healthz)
    return app


_lambda: Any = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point behind API Gateway (the same app, through Mangum)."""
    global _lambda
    if _lambda is None:
        settings = load_settings()
        configure_logging(settings.log_level)
        config = markets.load_config(settings.config)
        app = create_app(settings, config)
        # Opened once per container, not per invocation (Mangum would run the lifespan
        # on every call): connections open on first use and live as long as the container.
        app.state.runtime = ApiRuntime(settings, config)
        _lambda = Mangum(app, lifespan="off")
    answer: dict[str, Any] = _lambda(event, context)
    return answer
