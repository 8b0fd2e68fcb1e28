"""The HTTP API: jobs in, per-order collection now, job status, health (`lanes api`).

One ASGI app (FastAPI, OpenAPI page at /docs) served by uvicorn (`lanes api`)
and, in the same image, as a Lambda behind API Gateway through Mangum
(`scripts.api.app.handler`). Every route but /healthz and the docs needs an API
key (`X-API-Key` or `Authorization: Bearer`), checked before the body is read
(`scripts.api.gate`); keys never reach a log line or an answer (docs/DESIGN.md
rule 8). Every error is one shape (`Problem`), and every status a route can
answer is in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from mangum import Mangum
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

import markets
from lanes.config import Config
from lanes.errors import BudgetUnavailable, ConfigError
from lanes.logs import configure_logging
from lanes.policy import Lane
from lanes.settings import load_settings
from markets import Markets, PermanentError, RetryLater, TransientError
from markets.registry import market_of
from scripts.api.board import mount_board
from scripts.api.gate import Gate, problem
from scripts.api.jobs import (
    MAX_JOBS,
    BadRequest,
    IdempotencyConflict,
    Record,
    Refused,
    Sender,
    SendLog,
    check_jobs,
    fingerprint,
    idempotency_key,
    job_ids,
    new_job_id,
    send_jobs,
    send_once,
)
from scripts.api.models import (
    Collected,
    CollectQueued,
    FieldProblem,
    Health,
    JobRecord,
    JobsAccepted,
    JobState,
    Problem,
    SentJob,
)
from scripts.api.settings import ApiSettings
from scripts.tools.status import snapshot
from scripts.tools.validate import JobValidator
from worker.envelope import Envelope
from worker.idempotency import IdempotencyGuard
from worker.runtime import Connections
from worker.sqs import QueueMissing, SqsError

__all__ = ["DEFAULT_WAIT", "MAX_WAIT", "ApiRuntime", "NotFound", "create_app", "handler"]

log = structlog.get_logger("api")

DEFAULT_WAIT = 10.0
# API Gateway gives an integration 29 s: an answer must be on its way before that.
MAX_WAIT = 25.0
_CLAIM_SECONDS = 30.0


class ApiRuntime(Connections):
    """What the app holds open while it serves: the worker's connections (`Connections`),
    plus the markets, the checks and the sender."""

    def __init__(self, settings: ApiSettings, config: Config) -> None:
        super().__init__(settings, config)
        self.markets = Markets(config, settings, self.limiter, self.store.client)
        self.validators = {name: JobValidator(config, name) for name in config.markets}
        self.guard = IdempotencyGuard(
            self.store.client, ttl=settings.idempotency_ttl, claim_seconds=_CLAIM_SECONDS
        )
        self.send_log = SendLog(self.store.client, ttl=settings.idempotency_ttl)
        self.sender = Sender(self.sqs, settings.queue_prefix, self.tracker, settings.api_deadline)
        self._stack.push_async_callback(self.markets.aclose)


async def _store(runtime: ApiRuntime, record: JobRecord) -> JobRecord:
    """Write `record` as the job's status (the worker's format); the record as stored."""
    fields = record.model_dump(mode="json", exclude_none=True)
    (stored,) = await runtime.tracker.update_many([fields])
    return JobRecord.model_validate(stored)


def _runtime(request: Request) -> ApiRuntime:
    runtime: ApiRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[ApiRuntime, Depends(_runtime)]


class NotFound(LookupError):
    """404: the job or market the request names does not exist; `field` names the parameter."""

    def __init__(self, text: str, *, field: str) -> None:
        super().__init__(text)
        self.field = field


# --- the routes -------------------------------------------------------------------------

LaneQuery = Annotated[Lane, Query(description="the lane the job runs in")]


async def submit_jobs(
    runtime: Runtime,
    request: Request,
    lane: Annotated[Lane, Query(description="the lane queue the jobs go to")],
    idempotency: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Check every job as `lanes enqueue` does, then send them all (nothing if one is bad);
    past the deadline, answer 207 with what was sent (a repeat with the key sends the rest).

    The body is read here, not as a FastAPI body parameter: any JSON is taken, so that
    each bad job is answered by its index (the document shows the jobs' schema)."""
    try:
        jobs = json.loads(await request.body())
    except ValueError:  # not UTF-8, or not JSON
        raise HTTPException(400, "the body is not valid JSON") from None
    batch = jobs if isinstance(jobs, list) else [jobs]
    key = idempotency_key(idempotency, batch)
    envelopes = [job.envelope for job in check_jobs(batch, runtime.validators, job_ids(key))]

    async def send(already: Mapping[int, SentJob], record: Record) -> JobsAccepted:
        return await send_jobs(runtime.sender, lane, envelopes, already=already, record=record)

    replayed = False
    if key is None:
        answer = await send_jobs(runtime.sender, lane, envelopes)
    else:
        content = fingerprint(lane, batch)
        answer, replayed = await send_once(runtime.guard, runtime.send_log, key, content, send)
    log.info("api.jobs_sent", lane=lane.value, count=answer.count, unsent=len(answer.unsent),
             stopped=answer.stopped, replayed=replayed)  # fmt: skip
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    status = 207 if answer.unsent else 202
    return JSONResponse(answer.model_dump(), status_code=status, headers=headers)


async def _collect(
    runtime: ApiRuntime, kind: str, target: Collect, payload: dict[str, Any]
) -> JSONResponse:
    """Run the job now through the budget in `lane`; past `wait`, enqueue it (202)."""
    market, seller, lane, wait = target.market, target.seller, target.lane, target.wait
    if market not in runtime.validators:
        raise NotFound(f"unknown market {market!r}", field="market")
    job_id = new_job_id()
    body = {"kind": kind, "market": market, "seller": seller, "payload": payload, "id": job_id}
    (job,) = check_jobs([body], runtime.validators)
    record = JobRecord(
        id=job_id, state=JobState.RUNNING, market=market, lane=lane.value, kind=kind, seller=seller
    )
    retry_after: float | None = None
    started = time.monotonic()
    try:
        # The deadline lets the budget refuse at once what cannot start in time; the
        # timeout cancels a slow market call (a cancelled wait hands its reservation back).
        async with asyncio.timeout(wait):
            result = await runtime.markets.run(job.checked, lane, deadline=started + wait)
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
    accepted = await send_jobs(runtime.sender, lane, [job.envelope])
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
    built_in = market_of(known) if known else None  # its own product id field, else the generic one
    field = built_in.product_id_field if built_in else "product_id"
    payload = {target.field or field: product_id}
    return await _collect(runtime, "get_product", target, payload)


async def job_status(runtime: Runtime, job_id: Annotated[str, Path()]) -> JobRecord:
    """queued, running, done (with the result), failed or dead_lettered (with the reason)."""
    record = await runtime.tracker.get(job_id)
    if record is None:
        raise NotFound(f"no job {job_id!r} (unknown, or its record expired)", field="job_id")
    return JobRecord.model_validate(record)


async def status(
    runtime: Runtime,
    market: Annotated[list[str] | None, Query(description="repeatable; default all")] = None,
) -> dict[str, Any]:
    """What `lanes status --json` shows: queue depths and live budget usage."""
    chosen = market or sorted(runtime.config.markets)
    for name in chosen:
        if name not in runtime.config.markets:
            raise NotFound(f"unknown market {name!r}", field="market")
    state = await snapshot(
        runtime.sqs,
        runtime.store.client,
        runtime.limiter.usage,
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
        return JSONResponse(Health(redis="unavailable").model_dump(), status_code=503)
    return JSONResponse(Health(redis="ok").model_dump())


# --- errors and the access log ----------------------------------------------------------


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    return problem(404, str(exc), exc.field)


async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return JSONResponse(Problem(detail=str(exc), errors=exc.problems).model_dump(), 422)


async def _bad_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BadRequest)
    return problem(422, str(exc), exc.field)


def _where(loc: Sequence[int | str]) -> str:
    """The parameter a FastAPI validation error is about: its name, or `body`."""
    return "body" if loc[0] == "body" or len(loc) < 2 else str(loc[1])


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own checks (parameters, the body's JSON), in the one error shape: 400 when
    the body is not JSON, else 422."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    unparsed = any(error["type"] == "json_invalid" for error in errors)
    detail = "the body is not valid JSON" if unparsed else "the request is not what the API takes"
    problems = [
        FieldProblem(index=None, field=_where(error["loc"]), reason=str(error["msg"]))
        for error in errors
    ]
    answer = Problem(detail=detail, errors=problems)
    return JSONResponse(answer.model_dump(), status_code=400 if unparsed else 422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own refusals (no such route, a body it cannot read, a body
    over the limit) in the one error shape."""
    assert isinstance(exc, HTTPException)
    field = "body" if exc.status_code in (400, 413) else None
    return problem(exc.status_code, str(exc.detail), field, dict(exc.headers or {}))


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("api.redis_unavailable", error=str(exc))
    return problem(503, "redis unavailable; try again shortly", None, {"Retry-After": "1"})


async def _sqs_failed(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, QueueMissing):
        return problem(503, f"{exc} (run `lanes provision`)", "market")
    log.warning("api.sqs_failed", error=str(exc))
    return problem(503, f"SQS failed: {exc}", None, {"Retry-After": "1"})


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IdempotencyConflict)
    headers = {"Retry-After": f"{exc.retry_after:.0f}"} if exc.retry_after else {}
    return problem(409, str(exc), "Idempotency-Key", headers)


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


# What each error status means, as the OpenAPI document says it (all are `Problem`s).
_MEANING = {
    400: "the body is not JSON",
    401: "missing or wrong API key",
    404: "no such job or market",
    409: "the Idempotency-Key was used for another request, or its request is still sending",
    413: "the body is over LANES_API_MAX_BODY_BYTES",
    422: "the request is not what the API takes: each problem names its job, field and reason",
    503: "Redis or SQS unavailable, or a lane queue missing (nothing was sent)",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": Problem, "description": _MEANING[status]} for status in statuses}


def _jobs_body(config: Config) -> dict[str, Any]:
    """The request body as the OpenAPI document shows it: a job envelope, or a list of them."""
    job = Envelope.model_json_schema()
    job["properties"]["market"] = {"type": "string", "enum": sorted(config.markets)}
    jobs = {"type": "array", "items": job, "minItems": 1, "maxItems": MAX_JOBS}
    schema = {"anyOf": [job, jobs]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _routes(config: Config) -> APIRouter:
    """The API's routes (the board's are `scripts.api.board`'s router): a new route is its
    handler above and one registration here."""
    router = APIRouter()
    # The gate checks the key; these only put the two ways to send it in the OpenAPI document.
    secured = [
        Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
        Security(HTTPBearer(auto_error=False)),
    ]
    router.post(
        "/v1/jobs",
        status_code=202,
        dependencies=secured,
        response_model=JobsAccepted,
        openapi_extra=_jobs_body(config),
        responses={
            207: {"model": JobsAccepted, "description": "partly sent: see `unsent`, `stopped`"},
            **_errors(400, 401, 409, 413, 422, 503),
        },
    )(submit_jobs)
    collect_responses: dict[int | str, dict[str, Any]] = {
        202: {"model": CollectQueued, "description": "past `wait`: queued instead"},
        502: {"model": JobRecord, "description": "the market refused: the job failed"},
        **_errors(401, 404, 413, 422, 503),
    }
    router.post(
        "/v1/markets/{market}/sellers/{seller}/orders/{order_id}/collect",
        dependencies=secured,
        response_model=Collected,
        responses=collect_responses,
    )(collect_order)
    router.post(
        "/v1/markets/{market}/sellers/{seller}/products/{product_id}/collect",
        dependencies=secured,
        response_model=Collected,
        responses=collect_responses,
    )(collect_product)
    lookups = _errors(401, 404, 413, 422, 503)
    router.get("/v1/jobs/{job_id}", dependencies=secured, response_model=JobRecord,
            responses=lookups)(job_status)  # fmt: skip
    router.get("/v1/status", dependencies=secured, responses=lookups)(status)
    router.get("/healthz", response_model=Health,
            responses={503: {"model": Health, "description": "Redis does not answer"}},
            )(healthz)  # fmt: skip
    return router


def create_app(settings: ApiSettings, config: Config, *, insecure_local: bool = False) -> FastAPI:
    """The app; its lifespan opens an `ApiRuntime` (no keys and not `insecure_local`:
    `ConfigError`)."""
    keys = [key.get_secret_value().encode() for key in settings.api_keys]
    if not keys and not insecure_local:
        raise ConfigError(
            "no API keys: set LANES_API_KEYS (comma-separated or a JSON list), "
            "or serve this machine only with --insecure-local"
        )

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
    admits = mount_board(app, keys)  # the board at /board: its session cookie passes the gate
    # The last added runs first: every request is logged, then gated.
    app.add_middleware(Gate, keys=keys, max_body_bytes=settings.api_max_body_bytes, admits=admits)
    app.middleware("http")(_access_log)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(BudgetUnavailable, _unavailable)
    app.add_exception_handler(SqsError, _sqs_failed)
    app.add_exception_handler(IdempotencyConflict, _conflict)
    app.include_router(_routes(config))
    return app


_lambda: Any = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point behind API Gateway (the same app, through Mangum)."""
    global _lambda
    if _lambda is None:
        settings = load_settings(ApiSettings)
        configure_logging(settings.log_level)
        config = markets.load_config(settings.config)
        app = create_app(settings, config)
        # Opened once per container, not per invocation (Mangum would run the lifespan
        # on every call): connections open on first use and live as long as the container.
        app.state.runtime = ApiRuntime(settings, config)
        _lambda = Mangum(app, lifespan="off")
    answer: dict[str, Any] = _lambda(event, context)
    return answer
