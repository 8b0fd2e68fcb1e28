"""The HTTP API: jobs in, per-order collection now, job status, health (`lanes api`).

One ASGI app (FastAPI, OpenAPI page at /docs) served by uvicorn (`lanes api`)
and, in the same image, as a Lambda behind API Gateway through Mangum
(`scripts.api.app.handler`). Every route but /healthz and the docs needs an API
key (`X-API-Key` or `Authorization: Bearer`), checked before the body is read
(`scripts.api.gate`); keys never reach a log line or an answer (docs/DESIGN.md
rule 8). Every error is one shape (`Problem`, `scripts.api.errors`), and every
status a route can answer is in the OpenAPI document.

This module only assembles: the routers of `scripts.api.routes` and the board, the
gate, the access log and the error handlers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from mangum import Mangum

import markets
from lanes.errors import ConfigError
from lanes.logs import configure_logging
from lanes.settings import load_settings
from markets.config import Config
from scripts.api.board import mount_board
from scripts.api.errors import add_error_handlers
from scripts.api.gate import Gate
from scripts.api.routes import jobs, status
from scripts.api.routes import markets as market_calls
from scripts.api.runtime import ApiRuntime
from scripts.api.settings import ApiSettings

__all__ = ["create_app", "handler"]

log = structlog.get_logger("api")


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
    add_error_handlers(app)
    app.include_router(jobs.router(config))
    app.include_router(market_calls.router())
    app.include_router(status.router())
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
