"""A market call now, through the shared budget: per-order and per-product collection
(past `wait`, the job is queued instead)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from lanes.policy import Lane
from markets import PermanentError, RetryLater, TransientError
from markets.registry import market_of
from scripts.api.errors import responses
from scripts.api.gate import SECURED
from scripts.api.jobs import check_jobs, new_job_id, send_jobs
from scripts.api.models import Collected, CollectQueued, JobRecord, JobState
from scripts.api.runtime import ApiRuntime, Runtime, check_market

__all__ = ["DEFAULT_WAIT", "MAX_WAIT", "collect_order", "collect_product", "router"]

log = structlog.get_logger("api")

DEFAULT_WAIT = 10.0
# API Gateway gives an integration 29 s: an answer must be on its way before that.
MAX_WAIT = 25.0


async def _store(runtime: ApiRuntime, record: JobRecord) -> JobRecord:
    """Write `record` as the job's status (the worker's format); the record as stored."""
    fields = record.model_dump(mode="json", exclude_none=True)
    (stored,) = await runtime.tracker.update_many([fields])
    return JobRecord.model_validate(stored)


LaneQuery = Annotated[Lane, Query(description="the lane the job runs in")]
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


async def _collect(
    runtime: ApiRuntime, kind: str, target: Collect, payload: dict[str, Any]
) -> JSONResponse:
    """Run the job now through the budget in `lane`; past `wait`, enqueue it (202)."""
    market, seller, lane, wait = target.market, target.seller, target.lane, target.wait
    check_market(runtime, market)
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


def router() -> APIRouter:
    routes = APIRouter()
    answers: dict[int | str, dict[str, Any]] = {
        202: {"model": CollectQueued, "description": "past `wait`: queued instead"},
        502: {"model": JobRecord, "description": "the market refused: the job failed"},
        **responses(401, 404, 413, 422, 503),
    }
    routes.post(
        "/v1/markets/{market}/sellers/{seller}/orders/{order_id}/collect",
        dependencies=SECURED,
        response_model=Collected,
        responses=answers,
    )(collect_order)
    routes.post(
        "/v1/markets/{market}/sellers/{seller}/products/{product_id}/collect",
        dependencies=SECURED,
        response_model=Collected,
        responses=answers,
    )(collect_product)
    return routes
