"""A market simulator for `lanes demo` that also logs every arrival with its moment.

`python -m scripts.demo.sim MARKET --port P --rate R` serves the simulator of
`markets.simulators` unchanged, with one outer middleware that notes
(wall-clock time, route name, status) for each request before the simulator's
gateway sees it and after it answered. `GET /_demo/arrivals?after=N` returns the
entries from index N on: the demo reads them to draw requests per second as the
market received them, 429s included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

from aiohttp import web

from markets.simulators import simulated, simulator_app
from markets.simulators.state import Handler

__all__ = ["ARRIVALS_PATH", "with_arrival_log"]

ARRIVALS_PATH = "/_demo/arrivals"
_LOG = web.AppKey("demo_arrivals", list)
_AHEAD = -5  # niceness


def with_arrival_log(app: web.Application) -> web.Application:
    """`app` with an outermost middleware logging [time, route name, status] per request."""
    arrivals: list[list[object]] = []

    @web.middleware
    async def log_arrival(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == ARRIVALS_PATH:  # answered here: the gateway would want a signature
            after = int(request.query.get("after", "0"))
            return web.json_response(arrivals[after:])
        arrived = time.time()  # wall clock: the demo compares it with its own enqueue times
        response = await handler(request)
        name = request.match_info.route.name or request.path
        if name != "stats":  # the simulator's own counters, not a market request
            arrivals.append([arrived, name, response.status])
        return response

    app.middlewares.insert(0, log_arrival)
    app[_LOG] = arrivals
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo.sim")
    parser.add_argument("market", choices=list(simulated()))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    args = parser.parse_args()
    # The simulator stands for a market on its own machine: where allowed (root), it goes
    # ahead of other work on this host, so that it stamps arrivals when they come.
    with contextlib.suppress(PermissionError):
        os.nice(_AHEAD)
    app = simulator_app(args.market, args.rate)
    web.run_app(
        with_arrival_log(app), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
