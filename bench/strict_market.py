"""A strict market for benchmarks and tests: refuses any arrival over the limit.

It counts arrivals, as a real market does: an arrival is accepted only while
fewer than `limit` accepted arrivals lie in the trailing `seconds`; otherwise
it is refused with 429 (and not counted). `GET /stats` reports the counts,
`POST /reset` clears them. Run it in its own process so that its clock is not
delayed by the load it measures:

    python -m bench.strict_market --port 8080 --limit 50 --seconds 1
"""

from __future__ import annotations

import argparse
import time
from collections import deque

from aiohttp import web

__all__ = ["strict_market_app"]

_ARRIVALS = web.AppKey("arrivals", deque[float])
_COUNTS = web.AppKey("counts", dict[str, int])


def strict_market_app(limit: int, seconds: float) -> web.Application:
    app = web.Application()
    app[_ARRIVALS] = deque()
    app[_COUNTS] = {"accepted": 0, "refused": 0}

    async def call(request: web.Request) -> web.Response:
        now = time.monotonic()
        arrivals = request.app[_ARRIVALS]
        while arrivals and arrivals[0] <= now - seconds:
            arrivals.popleft()
        if len(arrivals) >= limit:
            request.app[_COUNTS]["refused"] += 1
            return web.json_response({"code": "RATE_LIMIT"}, status=429)
        arrivals.append(now)
        request.app[_COUNTS]["accepted"] += 1
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(request.app[_COUNTS])

    async def reset(request: web.Request) -> web.Response:
        request.app[_ARRIVALS].clear()
        request.app[_COUNTS].update(accepted=0, refused=0)
        return web.json_response(request.app[_COUNTS])

    # Any method, any name under /call: every arrival is counted against the one limit.
    app.router.add_route("*", "/call", call)
    app.router.add_route("*", "/call/{name}", call)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="A strict rate-limited market.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    web.run_app(
        strict_market_app(args.limit, args.seconds),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
