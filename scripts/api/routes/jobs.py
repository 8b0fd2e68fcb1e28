"""POST /v1/jobs: jobs into a lane queue, checked as `lanes enqueue` checks them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lanes.policy import Lane
from markets.config import Config
from scripts.api.errors import responses
from scripts.api.gate import SECURED
from scripts.api.jobs import (
    MAX_JOBS,
    Record,
    check_jobs,
    fingerprint,
    idempotency_key,
    job_ids,
    send_jobs,
    send_once,
)
from scripts.api.models import JobsAccepted, SentJob
from scripts.api.runtime import Runtime
from worker.envelope import Envelope

__all__ = ["router", "submit_jobs"]

log = structlog.get_logger("api")


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


def _jobs_body(config: Config) -> dict[str, Any]:
    """The request body as the OpenAPI document shows it: a job envelope, or a list of them."""
    job = Envelope.model_json_schema()
    job["properties"]["market"] = {"type": "string", "enum": sorted(config.markets)}
    jobs = {"type": "array", "items": job, "minItems": 1, "maxItems": MAX_JOBS}
    schema = {"anyOf": [job, jobs]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def router(config: Config) -> APIRouter:
    routes = APIRouter()
    routes.post(
        "/v1/jobs",
        status_code=202,
        dependencies=SECURED,
        response_model=JobsAccepted,
        openapi_extra=_jobs_body(config),
        responses={
            207: {"model": JobsAccepted, "description": "partly sent: see `unsent`, `stopped`"},
            **responses(400, 401, 409, 413, 422, 503),
        },
    )(submit_jobs)
    return routes
