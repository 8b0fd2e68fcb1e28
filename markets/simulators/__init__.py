"""Local simulators of the markets, for tests, benchmarks and `lanes demo`."""

from __future__ import annotations

from markets.simulators.coupang import DEFAULT_KEYS, coupang_app
from markets.simulators.naver import DEFAULT_APPS, naver_app
from markets.simulators.serve import serve
from markets.simulators.state import Faults, SimState, sim_state

__all__ = [
    "DEFAULT_APPS",
    "DEFAULT_KEYS",
    "Faults",
    "SimState",
    "coupang_app",
    "naver_app",
    "serve",
    "sim_state",
]
