"""Run a simulator in its own process (so its clock is not slowed by the load it measures):

    python -m markets.simulators coupang --port 8081 --rate 10
    python -m markets.simulators naver --port 8082 --rate 20
    python -m markets.simulators cafe24 --port 8083 --rate 2

Coupang's base_url is then http://127.0.0.1:8081, Naver's http://127.0.0.1:8082/external,
Cafe24's http://127.0.0.1:8083/{seller}/api/v2; the test credentials are those of
`DEFAULT_KEYS`, `DEFAULT_APPS` and `DEFAULT_CAFE24_APP` with `DEFAULT_MALLS`.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from markets.cafe24.simulator import cafe24_app
from markets.coupang.simulator import coupang_app
from markets.naver.simulator import naver_app
from markets.simulators.state import Faults, SimState


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m markets.simulators")
    parser.add_argument("market", choices=["coupang", "naver", "cafe24"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--rate",
        type=float,
        help="calls/s per vendor (coupang), R (naver), bucket leak/s per mall and API (cafe24)",
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 5xx answers")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    args = parser.parse_args()
    state = SimState(faults=Faults(error_rate=args.error_rate, latency=args.latency))
    if args.market == "coupang":
        app = coupang_app(rate=args.rate or 10.0, state=state)
    elif args.market == "naver":
        app = naver_app(rate=args.rate or 2.0, state=state)
    else:
        app = cafe24_app(leak=args.rate or 2.0, state=state)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
