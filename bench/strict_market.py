"""A strict market for benchmarks and tests: refuses any arrival over the limit.

It counts arrivals, as a real market does: an arrival is accepted only while
fewer than `limit` accepted arrivals lie in the trailing `seconds`; otherwise
it is refused with 429 (and not counted). With `--cooldown S` a refusal also
opens a penalty of S seconds in which every arrival is refused (a vendor-wide
limit shared with other tools), and `--retry-after` sends the penalty's time
left as `Retry-After` (in seconds, with decimals).
With `--bucket N --refill R` it is a leaky bucket instead (Cafe24's: N calls at
once, draining R per second; an arrival that would take it past N is refused) and
every answer carries `X-Api-Call-Limit: used/N`.
`GET /stats` reports the counts, `GET /log` every answer as [time, status],
`POST /reset` clears them. Run it in its own process so that its clock is not
delayed by the load it measures:

    python -m bench.strict_market --port 8080 --limit 50 --seconds 1
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["first_in_line", "strict_market_app"]


@dataclass
class _State:
    arrivals: deque[float] = field(default_factory=deque)
    accepted: int = 0
    refused: int = 0
    penalty_until: float = 0.0
    level: float = 0.0  # the bucket's, at `level_at`
    level_at: float = 0.0
    answers: list[tuple[float, int]] = field(default_factory=list)


_STATE = web.AppKey("state", _State)


def strict_market_app(
    limit: int,
    seconds: float,
    *,
    cooldown: float = 0.0,
    retry_after: bool = False,
    bucket: int = 0,
    refill: float = 0.0,
) -> web.Application:
    app = web.Application()
    app[_STATE] = _State()

    def refuse(state: _State, now: float) -> web.Response:
        state.refused += 1
        state.answers.append((time.time(), 429))
        headers = {}
        if cooldown > 0:
            if now >= state.penalty_until:
                state.penalty_until = now + cooldown
            if retry_after:
                headers["Retry-After"] = f"{state.penalty_until - now:.3f}"
        return web.json_response({"code": "RATE_LIMIT"}, status=429, headers=headers)

    async def call(request: web.Request) -> web.Response:
        now = time.monotonic()
        state = request.app[_STATE]
        if now < state.penalty_until:
            return refuse(state, now)
        if bucket > 0:
            state.level = max(0.0, state.level - (now - state.level_at) * refill)
            state.level_at = now
            if state.level + 1 > bucket:
                return refuse(state, now)
            state.level += 1
            state.accepted += 1
            state.answers.append((time.time(), 200))
            used = {"X-Api-Call-Limit": f"{math.ceil(state.level)}/{bucket}"}
            return web.json_response({"ok": True}, headers=used)
        while state.arrivals and state.arrivals[0] <= now - seconds:
            state.arrivals.popleft()
        if len(state.arrivals) >= limit:
            return refuse(state, now)
        state.arrivals.append(now)
        state.accepted += 1
        state.answers.append((time.time(), 200))
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        state = request.app[_STATE]
        return web.json_response({"accepted": state.accepted, "refused": state.refused})

    async def answers(request: web.Request) -> web.Response:
        return web.json_response(request.app[_STATE].answers)

    async def reset(request: web.Request) -> web.Response:
        request.app[_STATE] = _State()
        return web.json_response({"accepted": 0, "refused": 0})

    # Any method, any name under /call: every arrival is counted against the one limit.
    app.router.add_route("*", "/call", call)
    app.router.add_route("*", "/call/{name}", call)
    app.router.add_get("/stats", stats)
    app.router.add_get("/log", answers)
    app.router.add_post("/reset", reset)
    return app


def first_in_line() -> str:
    """Run this process ahead of the workers it measures, where the host allows it.

    A market's clock is on another machine: what a worker sends is stamped when it arrives.
    Here the market shares two cores with the workers and Redis; under load its loop
    stalled 40-90 ms at a time, and whatever arrived meanwhile was stamped when it resumed,
    so an arrival from more than a second before a later one could be counted in that
    one's trailing second (a refusal right after an 87 ms stall, its window's oldest
    arrival stamped as the stall ended). Real-time priority (the market only answers and
    sleeps in epoll) wakes it when bytes arrive; else a lower nice value; else as it is.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return "real-time (SCHED_FIFO)"
    except (AttributeError, PermissionError, OSError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except (AttributeError, PermissionError, OSError):
        return "normal: its stamps may lag under load (the stalls are printed with a refusal)"


def main() -> None:
    parser = argparse.ArgumentParser(description="A strict rate-limited market.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--cooldown", type=float, default=0.0, help="penalty after a refusal")
    parser.add_argument("--retry-after", action="store_true", help="send Retry-After")
    parser.add_argument("--bucket", type=int, default=0, help="a leaky bucket of this size")
    parser.add_argument("--refill", type=float, default=0.0, help="the bucket's calls/s")
    args = parser.parse_args()
    print(f"strict market scheduled {first_in_line()}", file=sys.stderr, flush=True)
    web.run_app(
        strict_market_app(
            args.limit,
            args.seconds,
            cooldown=args.cooldown,
            retry_after=args.retry_after,
            bucket=args.bucket,
            refill=args.refill,
        ),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
