"""What the HTTP API checks before any route reads a byte of the body: the API key, then
the body's size (docs/DESIGN.md rule 8).

A pure ASGI middleware, outside FastAPI's routing: FastAPI reads a route's
body before it runs the route's dependencies, so a key checked there would
come after a 50 MB body was read. Here a wrong key is answered 401 without
reading the body, a declared `Content-Length` over the limit 413 at once, and
the bytes that arrive are counted, so a body that lies about its length or is
chunked is stopped at the limit (413) too.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

import structlog
from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scripts.api.models import FieldProblem, Problem

__all__ = ["OPEN_PATHS", "SECURED", "BodyTooLarge", "Gate", "key_matches", "problem"]

log = structlog.get_logger("api")

# Served without a key: the health probe and the API's own documentation.
OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# The gate checks the key; a secured route's dependencies only put the two ways to send it
# in the OpenAPI document.
SECURED = [
    Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
    Security(HTTPBearer(auto_error=False)),
]


def problem(status: int, detail: str, field: str | None, headers: dict[str, str] | None = None,
            ) -> JSONResponse:  # fmt: skip
    """The API's one error answer: `detail` and one problem naming `field`."""
    body = Problem(detail=detail, errors=[FieldProblem(index=None, field=field, reason=detail)])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the bytes read pass the limit. An `HTTPException`: FastAPI
    lets those through its body parsing (any other error there becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over {limit} bytes (LANES_API_MAX_BODY_BYTES)")


def key_matches(given: str, keys: Sequence[bytes]) -> bool:
    """Whether `given` is one of `keys`; every key is compared, so the time does not tell
    which one matched."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key)
    return matched


class Gate:
    """The key (any of `keys`, compared in constant time; none: every request passes) and
    the body limit, for every path but `OPEN_PATHS`. `admits` lets a request through
    without the key header (the board: its login page, and its session cookie)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Sequence[bytes],
        max_body_bytes: int,
        admits: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self._keys = list(keys)
        self._limit = max_body_bytes
        self._admits = admits

    def _known(self, headers: Headers) -> bool:
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, credentials = headers.get("authorization", "").partition(" ")
            given = credentials.strip() if scheme.lower() == "bearer" else ""
        matched = key_matches(given, self._keys)
        if not matched:
            log.warning("api.unauthorized", reason="wrong key" if given else "missing key")
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        admitted = self._admits is not None and self._admits(scope)
        # Answered before the body is read: its bytes are still on the connection, so the
        # connection is closed after the answer, not kept for another request.
        unread = {"Connection": "close"}
        if self._keys and not admitted and not self._known(headers):
            refused = problem(401, "missing or wrong API key", "X-API-Key",
                              {"WWW-Authenticate": "Bearer"} | unread)  # fmt: skip
            await refused(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            too_large = BodyTooLarge(self._limit)
            await problem(413, too_large.detail, "body", unread)(scope, receive, send)
            return
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self._limit:
                    raise BodyTooLarge(self._limit)
            return message

        await self.app(scope, counted, send)
