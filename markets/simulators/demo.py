"""A market's part in `lanes demo`'s burst (`markets/<name>/demo.py`, named by its
simulator entry): its budget, the TOML that sets it, which route each lane's jobs call,
the warm-up call and the burst's jobs by lane. `scripts.demo` plays every market that
has one, and names none."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from lanes.policy import Lane
from markets.registry import MARKETS

__all__ = ["DemoJob", "DemoLoad", "Lanes", "demo_loads"]


@dataclass(frozen=True)
class DemoJob:
    """One job of the burst: the producer id is made of `key` (scripts.demo.load)."""

    kind: str
    seller: str
    payload: dict[str, Any]
    key: str


# The burst's jobs of one market: low (a backfill), medium (the scheduler's collection for
# the sellers), high (ships and answers one by one).
Lanes = tuple[list[DemoJob], list[DemoJob], list[DemoJob]]


@dataclass(frozen=True)
class DemoLoad:
    """`limit`: the demo's budget (requests/s); `market_rate`: what its simulator lets
    through before refusing, and `shown`, how the demo's first line describes both
    (`{limit}/s at {shown}`); `route_lanes`: the simulator's route each lane's jobs
    call (an arrival's route tells its lane); `config(base_url)`: the market's TOML
    tables; `warm_up(today)`: the seller and `params` of the cheap `call` to
    `inquiries` that tells the workers answer; `plan(duration, sellers, now)`: the
    burst's jobs."""

    limit: float
    market_rate: float
    shown: str
    route_lanes: Mapping[str, Lane]
    config: Callable[[str], str]
    warm_up: Callable[[date], tuple[str, dict[str, Any]]]
    plan: Callable[[float, int, datetime], Lanes]


def demo_loads() -> dict[str, DemoLoad]:
    """The markets in the demo, in the registry's order."""
    loads: dict[str, DemoLoad] = {}
    for name, market in MARKETS.items():
        if market.simulator is not None and market.simulator.demo is not None:
            loads[name] = importlib.import_module(market.simulator.demo).DEMO
    return loads
