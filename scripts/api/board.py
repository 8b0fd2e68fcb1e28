"""The board: a web page at /board where an operator sees every budget and lane live, and
acts on dead letters, jobs and lanes (issue 23).

Served by the API app (`lanes api`, and the same Lambda behind API Gateway): plain
HTML, CSS and JS from `scripts/api/board_static` (nothing from the internet; the chart is
inline SVG drawn by the page's own script), and JSON under `/board/api/`.

- **Sign-in**: the operator enters an API key (and a name, recorded on pauses) once on
  the login form; the answer is a signed session cookie (`lanes_board`: HTTP-only,
  Secure, SameSite=Strict, `SESSION_SECONDS` long) that the API's gate
  (`scripts.api.gate`) takes instead of the key on `/board/api/`. The key is never in
  a URL or in the page; the cookie is signed with a secret derived from all the keys,
  so changing `LANES_API_KEYS` ends every session. Without the cookie (or a key
  header) the data answers 401 and the page is the login form.
- **Live data**: pages poll `/board/api/snapshot` every second; one shared snapshot
  (`Feed`) is read at most once per `INTERVAL` whatever the number of open pages, with
  the `lanes status` readers (`scripts.tools.status.snapshot`) and the pause flags.
- **Reads** of jobs go through `worker.tracking`; the **actions** (dead letters
  replayed or discarded, lanes paused) are `scripts.api.routes.control`'s router, which
  this module mounts beside its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import Headers
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from lanes.budget import split_name
from lanes.errors import BudgetUnavailable
from lanes.policy import Lane
from scripts.api.gate import key_matches, problem
from scripts.api.routes import control
from scripts.api.runtime import ApiRuntime, check_market, runtime_of
from scripts.tools.status import snapshot

__all__ = ["BOARD", "COOKIE", "INTERVAL", "SESSION_SECONDS", "Feed", "Sessions", "mount_board"]

log = structlog.get_logger("api.board")

BOARD = "/board"
COOKIE = "lanes_board"
SESSION_SECONDS = 8 * 3600
INTERVAL = 1.0  # seconds between two reads of the shared snapshot
HISTORY = 300  # snapshots of usage kept for the charts (5 minutes at INTERVAL)
BUSIEST = 20  # per-seller budgets listed without a search
CARDS = 6  # per-seller budgets in use drawn as cards beside the app budgets
# Outcomes counted per minute for a dead-letter queue, beside its dead_lettered (in).
_DEAD_LETTER_OUTS = ("replayed", "discarded")
_OPEN = frozenset({BOARD, f"{BOARD}/", f"{BOARD}/login", f"{BOARD}/logout"})
# Every URL the pages and their answers use is relative to the page at `/board/`, so the
# board works under any prefix the browser sees and the app does not (an API Gateway
# stage, `/prod/board/`; a proxy's path; `--root-path`). The cookie's path is left to
# the browser (the directory of the login's URL: `/prod/board`) for the same reason.
# The pages load only what lanes serves (docs/DESIGN.md rule 8 keeps keys out of pages).
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_STATIC = files("scripts.api") / "board_static"


class Sessions:
    """Signed session cookies carrying the operator's name, valid `max_age` seconds."""

    def __init__(self, keys: Sequence[bytes], *, max_age: int = SESSION_SECONDS) -> None:
        self.keys = list(keys)
        self.max_age = max_age
        secret = hashlib.sha256(b"lanes board session\0" + b"\0".join(sorted(keys))).hexdigest()
        self._signer = URLSafeTimedSerializer(secret, salt="lanes-board")

    def issue(self, who: str) -> str:
        return self._signer.dumps({"who": who})

    def who(self, token: str | None) -> str | None:
        """The name in a valid, unexpired `token`; None otherwise."""
        if not token:
            return None
        try:
            data = self._signer.loads(token, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is one
            return None
        return str(data.get("who", "?")) if isinstance(data, dict) else None

    def of(self, headers: Headers) -> str | None:
        """Who the request's cookie names, "api key" for a key header, "local" with no keys."""
        if not self.keys:
            return "local"
        cookies = _cookies(headers.get("cookie", ""))
        return self.who(cookies.get(COOKIE))

    def operator(self, request: Request) -> str:
        """The name an action is recorded under: the session's, else "api key"."""
        return self.of(request.headers) or "api key"

    def admits(self, scope: Scope) -> bool:
        """For the gate: the login page and static files always; `/board/api/` with a
        valid session cookie."""
        path = _route_path(scope)
        if path in _OPEN or path.startswith(f"{BOARD}/static/"):
            return True
        return path.startswith(f"{BOARD}/api/") and self.of(Headers(scope=scope)) is not None


def _route_path(scope: Scope) -> str:
    """The path the app routes by: without the `root_path` a server or a mount put in front
    (ASGI servers may or may not include it in `path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _cookies(header: str) -> dict[str, str]:
    pairs = (part.strip().partition("=") for part in header.split(";"))
    return {name: value for name, _, value in pairs if name}


# --- the shared snapshot ----------------------------------------------------------------


class Feed:
    """The one snapshot every page reads: refreshed when older than `interval`, by one
    reader at a time (the others wait for it and share its answer)."""

    def __init__(self, *, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._lock = asyncio.Lock()
        self._at = float("-inf")
        self._current: dict[str, Any] = {}
        self._sellers: list[dict[str, Any]] = []
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.reads = 0  # snapshots read (the board's tests and measurements count them)

    async def current(self, runtime: ApiRuntime) -> dict[str, Any]:
        async with self._lock:
            if time.monotonic() - self._at >= self.interval:
                await self._read(runtime)
                self._at = time.monotonic()
        return self._current

    async def sellers(self, runtime: ApiRuntime, text: str, limit: int) -> list[dict[str, Any]]:
        """Per-seller budgets whose seller contains `text` (any case), busiest first."""
        await self.current(runtime)
        wanted = text.casefold()
        return [row for row in self._sellers if wanted in row["seller"].casefold()][:limit]

    async def _read(self, runtime: ApiRuntime) -> None:
        config = runtime.config
        names = sorted(config.markets)
        state = await snapshot(
            runtime.sqs, runtime.store.client, runtime.limiter.usage, config,
            prefix=runtime.settings.queue_prefix, markets=names,
        )  # fmt: skip
        state_error = state.budgets_error
        now = time.time()
        minute, into = divmod(now, 60)
        try:
            this_minute = await runtime.tracker.outcomes(int(minute))
            last_minute = await runtime.tracker.outcomes(int(minute) - 1)
        except BudgetUnavailable as exc:  # shown on the page, as the budgets' error
            this_minute, last_minute, state_error = {}, {}, str(exc)
        self.reads += 1
        data = state.as_json()
        for queue in data["queues"]:
            # The trailing minute: this minute's counts and the part of the last one
            # still inside it (as if it were spread evenly). The dead-letter queue's:
            # in, dead_lettered; out, the board's replays and deletions.
            for outcome in ("done", "failed", "dead_lettered", *_DEAD_LETTER_OUTS):
                name = f"{queue['market']}:{queue['lane']}:{outcome}"
                recent = this_minute.get(name, 0) + last_minute.get(name, 0) * (1 - into / 60)
                queue[f"{outcome}_per_minute"] = round(recent, 1)
        apps: list[dict[str, Any]] = []
        sellers: list[dict[str, Any]] = []
        for row in data["budgets"]:
            market, endpoint, seller = split_name(row["budget"])
            row.update(market=market, endpoint=endpoint, seller=seller)
            (sellers if seller else apps).append(row)
        sellers.sort(key=lambda row: (-row["used"], -row["cooldown"], row["budget"]))
        self._sellers = sellers
        # Cards: every app budget, and the busiest per-seller ones in use (Coupang counts
        # every call per vendor: its cards are its vendors').
        cards = apps + [row for row in sellers[:CARDS] if row["used"] or row["cooldown"]]
        self._history.append(
            {"t": now, "used": {row["budget"]: [row["in_window"][lane.value] for lane in Lane]
                                for row in cards}}
        )  # fmt: skip
        self._current = {
            "at": now,
            "interval": self.interval,
            "lanes": {lane.value: config.lanes[lane].ceiling for lane in Lane},
            "markets": names,
            "queues": data["queues"],
            "budgets": cards,
            "busiest_sellers": sellers[:BUSIEST],
            "seller_budgets": len(sellers),
            "budgets_error": state_error,
            "lateness": data["lateness"],
            "paused": data["paused"],
            "history": list(self._history),
        }


# --- the routes -------------------------------------------------------------------------


def _page(name: str, status: int = 200, *, error: bool = False) -> HTMLResponse:
    text = (_STATIC / name).read_text(encoding="utf-8")
    if error:
        text = text.replace('id="error" hidden', 'id="error"')
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def _router(sessions: Sessions, feed: Feed) -> APIRouter:
    router = APIRouter(prefix=BOARD, include_in_schema=False)

    @router.get("")
    async def to_page() -> Response:
        # Relative, so it keeps any prefix: /prod/board -> /prod/board/ (the page's URLs
        # are relative to it).
        return RedirectResponse("board/", status_code=307)

    @router.get("/")
    async def page(request: Request) -> Response:
        if sessions.of(request.headers) is None:
            return _page("login.html", 401)
        return _page("index.html")

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0]
        name = " ".join((form.get("name") or ["operator"])[0].split())[:60] or "operator"
        if sessions.keys and not key_matches(key, sessions.keys):
            log.warning("board.login_refused")
            return _page("login.html", 401, error=True)
        answer = RedirectResponse("./", status_code=303)
        answer.set_cookie(
            COOKIE, sessions.issue(name), max_age=sessions.max_age, path=None,
            httponly=True, secure=True, samesite="strict",
        )  # fmt: skip
        log.info("board.login", who=name)
        return answer

    @router.post("/logout")
    async def logout() -> Response:
        answer = RedirectResponse("./", status_code=303)
        answer.set_cookie(COOKIE, "", max_age=0, expires=0, path=None, httponly=True,
                          secure=True, samesite="strict")  # fmt: skip
        return answer

    @router.get("/api/snapshot")
    async def current(request: Request) -> JSONResponse:
        data = await feed.current(runtime_of(request))
        return JSONResponse(
            {**data, "who": sessions.operator(request)}, headers={"Cache-Control": "no-store"}
        )

    @router.get("/api/sellers")
    async def sellers(
        request: Request,
        q: Annotated[str, Query(max_length=200)] = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        return await feed.sellers(runtime_of(request), q, limit)

    @router.get("/api/jobs/{job_id}")
    async def job(request: Request, job_id: Annotated[str, Path(max_length=200)]) -> Response:
        record = await runtime_of(request).tracker.get(job_id)
        if record is None:
            return problem(404, f"no job {job_id!r} (unknown, or its record expired)", "job_id")
        return JSONResponse(record)

    @router.get("/api/sellers/{market}/{seller}/jobs")
    async def seller_jobs(
        request: Request,
        market: Annotated[str, Path()],
        seller: Annotated[str, Path(max_length=200)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Response:
        runtime = runtime_of(request)
        check_market(runtime, market)
        return JSONResponse(await runtime.tracker.recent(market, seller, limit=limit))

    return router


def mount_board(app: FastAPI, keys: Sequence[bytes]) -> Callable[[Scope], bool]:
    """Serve the board at /board in `app`; returns what the gate lets through without a
    key (`Gate(admits=...)`)."""
    sessions = Sessions(keys)
    app.state.board_feed = feed = Feed()
    app.include_router(_router(sessions, feed))
    app.include_router(control.router(sessions, BOARD))
    app.mount(
        f"{BOARD}/static",
        StaticFiles(packages=[("scripts.api", "board_static")]),
        name="board-static",
    )
    return sessions.admits
