"""The fault suite's market process: `bench.strict_market` plus faults, side effects counted
per id and a results sink (`python -m bench.faults --serve-market PORT`)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import web

from bench.strict_market import first_in_line, strict_market_app

__all__ = ["fault_market_app", "serve_market"]

_FAULT = web.AppKey("fault", dict[str, Any])
_EFFECTS = web.AppKey("effects", Counter[str])
_RESULTS = web.AppKey("results", dict[str, list[float]])
_STALLS = web.AppKey("stalls", list[tuple[float, float]])

# The market's own loop is the arrival clock: a stall delays the stamps of everything that
# arrived during it, so a refusal right after one may be the clock's, not the senders'.
_TICK = 0.002
_STALL = 0.010


def fault_market_app(limit: int, seconds: float) -> web.Application:
    """`bench.strict_market` (every arrival under /call counted against one limit) plus:
    `POST /fault {"status", "sleep", "sink_status"}` sets how admitted calls and the results
    sink answer; a POST's JSON `key` counts one side effect performed (an admitted arrival
    the market did not fail); `POST /results` is a results sink; `GET /report` tells all,
    `GET /effects` the side effects performed per key, `GET /finished` the ids with a result."""
    app = strict_market_app(limit, seconds)
    app[_FAULT] = {}
    app[_EFFECTS] = Counter()
    app[_RESULTS] = {}
    app[_STALLS] = []

    async def watch_loop(app: web.Application) -> Any:
        async def watch() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(_TICK)
                lag = time.monotonic() - before - _TICK
                if lag > _STALL:
                    app[_STALLS].append((time.time(), round(lag, 4)))

        task = asyncio.create_task(watch())
        yield
        task.cancel()

    app.cleanup_ctx.append(watch_loop)

    @web.middleware
    async def faults(request: web.Request, handler: Any) -> web.StreamResponse:
        answer: web.StreamResponse = await handler(request)
        if not request.path.startswith("/call") or answer.status != 200:
            return answer  # refused over the limit (counted by the strict market)
        fault = request.app[_FAULT]
        if fault.get("status"):
            return web.json_response({"code": "FAULT"}, status=int(fault["status"]))
        if request.method == "POST":
            with contextlib.suppress(ValueError):
                body = await request.json()
                request.app[_EFFECTS][str(body.get("key"))] += 1
        if fault.get("sleep"):
            await asyncio.sleep(float(fault["sleep"]))
        return answer

    async def set_fault(request: web.Request) -> web.Response:
        request.app[_FAULT].clear()
        request.app[_FAULT].update(await request.json())
        return web.json_response(request.app[_FAULT])

    async def results(request: web.Request) -> web.Response:
        status = request.app[_FAULT].get("sink_status")
        if status:
            return web.json_response({"code": "SINK DOWN"}, status=int(status))
        record = await request.json()
        request.app[_RESULTS].setdefault(str(record.get("id")), []).append(time.time())
        return web.json_response({"ok": True})

    async def report(request: web.Request) -> web.Response:
        effects = request.app[_EFFECTS]
        return web.json_response(
            {
                "effects": sum(effects.values()),
                "twice": sorted(key for key, count in effects.items() if count > 1),
                "results": request.app[_RESULTS],
                "stalls": request.app[_STALLS],
            }
        )

    async def finished(request: web.Request) -> web.Response:
        # What a poller needs, cheaply: the full report of a 10,000-job soak took the
        # market's loop 60 ms every 2 s, and arrivals meanwhile were stamped late.
        return web.json_response(list(request.app[_RESULTS]))

    async def effects(request: web.Request) -> web.Response:
        return web.json_response(dict(request.app[_EFFECTS]))

    app.middlewares.append(faults)
    app.router.add_post("/fault", set_fault)
    app.router.add_post("/results", results)
    app.router.add_get("/report", report)
    app.router.add_get("/finished", finished)
    app.router.add_get("/effects", effects)
    return app


def serve_market(port: int, limit: int) -> None:
    """Serve the market on `port` until terminated (the rig runs it in its own process)."""
    print(f"fault market on {port}, scheduled {first_in_line()}", file=sys.stderr, flush=True)
    web.run_app(
        fault_market_app(limit, 1.0), host="127.0.0.1", port=port, print=None, access_log=None
    )
