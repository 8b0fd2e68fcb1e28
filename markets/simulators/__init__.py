"""Local simulators of the markets, for tests, benchmarks and `lanes demo`."""

from __future__ import annotations

from markets.cafe24.simulator import DEFAULT_CAFE24_APP, DEFAULT_MALLS, cafe24_app, cafe24_malls
from markets.coupang.simulator import DEFAULT_KEYS, coupang_app
from markets.naver.simulator import DEFAULT_APPS, naver_app
from markets.simulators.serve import serve
from markets.simulators.state import Faults, SimState, sim_state

__all__ = [
    "DEFAULT_APPS",
    "DEFAULT_CAFE24_APP",
    "DEFAULT_KEYS",
    "DEFAULT_MALLS",
    "Faults",
    "SimState",
    "cafe24_app",
    "cafe24_malls",
    "coupang_app",
    "naver_app",
    "serve",
    "sim_state",
]
