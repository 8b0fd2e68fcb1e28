"""Local simulators of the markets, for tests, benchmarks and `lanes demo`.

Each market's own simulator is `markets/<name>/simulator.py` (named by its `Market`'s
`simulator` entry); this package holds what they share and runs them by market name.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from lanes.errors import ConfigError
from markets.market import Market, SimulatorEntry
from markets.registry import MARKETS
from markets.simulators.serve import serve
from markets.simulators.state import Faults, SimState, sim_state

__all__ = [
    "Faults",
    "SimState",
    "local_ports",
    "serve",
    "sim_state",
    "simulated",
    "simulator_app",
    "simulator_credentials",
    "simulator_of",
]


class _SimulatorModule(Protocol):
    TEST_CREDENTIALS: Mapping[str, str]

    def make_app(self, rate: float, state: SimState) -> web.Application: ...


def _module(name: str) -> _SimulatorModule:
    module: _SimulatorModule = importlib.import_module(simulator_of(name).module)
    return module


def simulated() -> dict[str, Market]:
    """The built-in markets that have a simulator, by name."""
    return {name: market for name, market in MARKETS.items() if market.simulator is not None}


def local_ports() -> dict[str, int]:
    """The markets `lanes services` starts a simulator for, with its default port."""
    return {
        name: market.simulator.port
        for name, market in simulated().items()
        if market.simulator is not None and market.simulator.port is not None
    }


def simulator_of(name: str) -> SimulatorEntry:
    """Market `name`'s simulator entry; a `ConfigError` naming the simulated markets."""
    market = simulated().get(name)
    if market is None or market.simulator is None:
        known = ", ".join(simulated())
        raise ConfigError(f"no simulator for market {name!r} (simulated: {known})")
    return market.simulator


def simulator_app(
    name: str, rate: float | None = None, state: SimState | None = None
) -> web.Application:
    """Market `name`'s simulator app at `rate` (default: its entry's)."""
    entry = simulator_of(name)
    return _module(name).make_app(entry.rate if rate is None else rate, state or SimState())


def simulator_credentials(name: str) -> dict[str, str]:
    """Market `name`'s simulator's test credentials, by the name lanes reads each under
    (`LANES_CREDENTIALS__<MARKET>__<NAME>`)."""
    return dict(_module(name).TEST_CREDENTIALS)
