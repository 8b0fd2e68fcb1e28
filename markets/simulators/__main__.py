"""Run a simulator in its own process (so its clock is not slowed by the load it measures):

    python -m markets.simulators coupang --port 8081 --rate 10
    python -m markets.simulators naver --port 8082 --rate 20
    python -m markets.simulators cafe24 --port 8083 --rate 2

The market's base_url is then http://127.0.0.1:<port> followed by its simulator entry's
`base_path` (Naver's `/external`, Cafe24's `/{seller}/api/v2`); the test credentials are
each simulator module's defaults (`DEFAULT_KEYS`, `DEFAULT_APPS`, `DEFAULT_CAFE24_APP`).
"""

from __future__ import annotations

import argparse

from aiohttp import web

from markets.simulators import simulated, simulator_app
from markets.simulators.state import Faults, SimState


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m markets.simulators")
    parser.add_argument("market", choices=list(simulated()))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--rate",
        type=float,
        help="calls/s per vendor (coupang), R (naver), bucket leak/s per mall and API (cafe24); "
        "default: the market's own",
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 5xx answers")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    args = parser.parse_args()
    state = SimState(faults=Faults(error_rate=args.error_rate, latency=args.latency))
    app = simulator_app(args.market, args.rate or None, state)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
