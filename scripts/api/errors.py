"""Every error the API answers, in the one shape (`Problem`), and what each status means
in the OpenAPI document (`responses`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lanes.errors import BudgetUnavailable
from scripts.api.gate import problem
from scripts.api.jobs import BadRequest, IdempotencyConflict, Refused
from scripts.api.models import FieldProblem, Problem
from scripts.api.runtime import NotFound
from worker.sqs import QueueMissing, SqsError

__all__ = ["add_error_handlers", "responses"]

log = structlog.get_logger("api")

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


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": Problem, "description": _MEANING[status]} for status in statuses}


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


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(BudgetUnavailable, _unavailable)
    app.add_exception_handler(SqsError, _sqs_failed)
    app.add_exception_handler(IdempotencyConflict, _conflict)
