"""Reads: a job's status, the queues and budgets (`lanes status --json`), and health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from scripts.api.errors import responses
from scripts.api.gate import SECURED
from scripts.api.models import Health, JobRecord
from scripts.api.runtime import NotFound, Runtime, check_market
from scripts.tools.status import snapshot

__all__ = ["healthz", "job_status", "router", "status"]


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
        check_market(runtime, name)
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


def router() -> APIRouter:
    routes = APIRouter()
    lookups = responses(401, 404, 413, 422, 503)
    routes.get("/v1/jobs/{job_id}", dependencies=SECURED, response_model=JobRecord,
               responses=lookups)(job_status)  # fmt: skip
    routes.get("/v1/status", dependencies=SECURED, responses=lookups)(status)
    routes.get("/healthz", response_model=Health,
               responses={503: {"model": Health, "description": "Redis does not answer"}},
               )(healthz)  # fmt: skip
    return routes
