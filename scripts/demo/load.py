"""The burst `lanes demo` plays, per market, timed over `--duration` seconds.

- low from the start: a backfill;
- medium at 10 % of the duration: the scheduler's order collection for `--sellers`
  sellers;
- high from 40 % to 60 %: ships and inquiry answers arriving one by one.

Each market's jobs, budget and TOML are its own `DemoLoad` (`markets/<name>/demo.py`,
read through `markets.simulators.demo`); this module names no market. Each lane's jobs
call their own endpoints, so a request's route at the simulator tells its lane
(`ROUTE_LANES`) without the client having to say.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from lanes.policy import Lane
from markets.simulators.demo import DemoJob, demo_loads
from scripts.tools.backfill import producer_id

__all__ = [
    "LIMITS",
    "LOADS",
    "MARKETS",
    "MARKET_RATES",
    "ROUTE_LANES",
    "Planned",
    "config_text",
    "plan_burst",
]

LOADS = demo_loads()
MARKETS = tuple(LOADS)
# The budgets (requests/s) and what the simulators let through.
LIMITS: Mapping[str, float] = {market: load.limit for market, load in LOADS.items()}
MARKET_RATES: Mapping[str, float] = {market: load.market_rate for market, load in LOADS.items()}
ROUTE_LANES: Mapping[str, Mapping[str, Lane]] = {
    market: load.route_lanes for market, load in LOADS.items()
}


@dataclass(frozen=True)
class Planned:
    """One message: when to send it (seconds from the start), where, and its body."""

    at: float
    market: str
    lane: Lane
    id: str
    body: str


def config_text(base_urls: Mapping[str, str]) -> str:
    """The demo's TOML: the built-in catalogues, one budget per market at `LIMITS`."""
    return "".join(load.config(base_urls[market]) for market, load in LOADS.items())


def _planned(market: str, job: DemoJob) -> Planned:
    job_id = producer_id("demo", market, job.kind, job.seller, job.key)
    body = {
        "kind": job.kind, "market": market, "seller": job.seller, "payload": job.payload,
        "id": job_id,
    }  # fmt: skip
    return Planned(0.0, market, Lane.LOW, job_id, json.dumps(body))


def _spread(jobs: list[Planned], lane: Lane, start: float, end: float) -> list[Planned]:
    """`jobs` in `lane`, sent evenly from `start` to `end` seconds."""
    step = (end - start) / max(len(jobs), 1)
    return [
        Planned(start + step * index, job.market, lane, job.id, job.body)
        for index, job in enumerate(jobs)
    ]


def _phases(market: str, duration: float, sellers: int, now: datetime) -> list[Planned]:
    low, medium, high = (
        [_planned(market, job) for job in jobs]
        for jobs in LOADS[market].plan(duration, sellers, now)
    )
    return (
        _spread(low, Lane.LOW, 0.0, 0.02 * duration)
        + _spread(medium, Lane.MEDIUM, 0.1 * duration, 0.12 * duration)
        + _spread(high, Lane.HIGH, 0.4 * duration, 0.6 * duration)
    )


def plan_burst(duration: float, sellers: int, now: datetime | None = None) -> list[Planned]:
    """Every message of the burst, in the order of sending."""
    moment = now or datetime.now(UTC)
    planned = [job for market in MARKETS for job in _phases(market, duration, sellers, moment)]
    return sorted(planned, key=lambda job: job.at)
