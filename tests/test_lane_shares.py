"""Scenario: many concurrent callers in all three lanes against each simulator.

Three `Markets` (three worker processes) share one budget of L requests per
second through Redis. First low and medium saturate it, then high joins.
The market must never answer 429, and each lane's served share must be as
docs/DESIGN.md says: low at most 70 % of L, low and medium together about 80 %,
and high at least the 20 % kept free for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from lanes import Lane
from markets import JobRequest, Markets
from markets.coupang.simulator import coupang_app
from markets.naver.simulator import naver_app
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    MakeMarkets,
    Running,
    StartSimulator,
    markets_config,
)

LIMIT = 30  # requests per second, at the market and in the config
WARM_UP = 0.5
MEASURE = 2.0
CALLERS_PER_LANE = 6
SLACK = 2  # requests: the edges of the measured span cut windows in two


async def _phase(workers: list[Markets], request: JobRequest, lanes: list[Lane]) -> Counter[Lane]:
    """Saturate with callers in `lanes`; the requests each lane got served while measured."""
    served: list[tuple[Lane, float]] = []

    async def caller(markets: Markets, lane: Lane) -> None:
        while True:
            await markets.run(request, lane)
            served.append((lane, time.monotonic()))

    started = time.monotonic()
    tasks = [
        asyncio.create_task(caller(workers[index % len(workers)], lane))
        for lane in lanes
        for index in range(CALLERS_PER_LANE)
    ]
    await asyncio.sleep(WARM_UP + MEASURE)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    begin, end = started + WARM_UP, started + WARM_UP + MEASURE
    return Counter(lane for lane, moment in served if begin <= moment < end)


async def _check_shares(sim: Running, workers: list[Markets], request: JobRequest) -> None:
    capacity = LIMIT * MEASURE
    alone = await _phase(workers, request, [Lane.LOW, Lane.MEDIUM])
    assert alone[Lane.LOW] <= 0.7 * capacity + SLACK
    assert alone[Lane.LOW] + alone[Lane.MEDIUM] <= 0.8 * capacity + SLACK
    assert alone[Lane.LOW] + alone[Lane.MEDIUM] >= 0.65 * capacity
    together = await _phase(workers, request, list(Lane))
    assert together[Lane.HIGH] >= 0.2 * capacity - SLACK
    assert together[Lane.LOW] <= 0.7 * capacity + SLACK
    assert together[Lane.LOW] + together[Lane.MEDIUM] <= 0.8 * capacity + SLACK
    assert sum(together.values()) <= capacity + SLACK
    assert sim.state.rate_limited == Counter()
    assert 429 not in sim.state.statuses


@pytest.mark.slow
@pytest.mark.faults  # measured shares: run alone
async def test_naver_lanes_share_an_app_budget_without_429(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Naver's token bucket (R=30, burst 60) never refuses; the lanes get their shares."""
    sim = await start_simulator(naver_app(rate=LIMIT))
    config = markets_config(
        naver=sim.url, extra={"naver": {"groups": {"origin_products": {"rps": LIMIT}}}}
    )
    workers = [await make_markets(config) for _ in range(3)]
    request = JobRequest("get_product", "naver", "any-seller", {"origin_product_no": 5_000_001})
    await _check_shares(sim, workers, request)


@pytest.mark.slow
@pytest.mark.faults  # measured shares: run alone
async def test_coupang_lanes_share_a_vendor_budget_without_429(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Coupang's strict per-vendor window (30 in any second) never refuses; shares hold."""
    sim = await start_simulator(coupang_app(rate=LIMIT))
    config = markets_config(
        coupang=sim.url, extra={"coupang": {"groups": {"vendor": {"rps": LIMIT}}}}
    )
    workers = [await make_markets(config) for _ in range(3)]
    request = JobRequest("get_product", "coupang", COUPANG_VENDOR, {"seller_product_id": 1_000_001})
    await _check_shares(sim, workers, request)
