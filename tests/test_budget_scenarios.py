"""Budget scenarios on a real Redis: the limit holds for any arrivals, lanes get their shares."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.budget import Run, market_process, process_main
from lanes import Budget, Lane, Limiter, RedisStore, Window
from lanes.epoch import mark_epochs
from scripts.local.services import RedisServer, free_port
from tests.conftest import OwnRedis
from tests.windows import over_limit_windows

MakeLimiter = Callable[..., Limiter]
MakeBudget = Callable[..., Budget]


arrivals = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=25),  # gap before the arrival, ms
        st.sampled_from(list(Lane)),
        st.integers(min_value=1, max_value=2),  # cost
        st.sampled_from([0.0, None]),  # refuse at once, or reserve within the horizon
    ),
    min_size=5,
    max_size=40,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.slow
@given(sequence=arrivals)
def test_no_trailing_window_ever_exceeds_any_limit(
    redis_server: RedisServer, sequence: list[tuple[int, Lane, int, float | None]]
) -> None:
    """Random arrivals (lanes, costs, reservations) never put more than a window's limit in it."""
    windows = (Window(limit=3, seconds=0.2), Window(limit=5, seconds=0.5))
    budget = Budget(f"prop:{uuid.uuid4().hex}", windows)

    async def run() -> list[float]:
        admitted: list[float] = []
        async with RedisStore(redis_server.url) as store:
            limiter = Limiter(store.client, restart_guard=False)  # the tests' own Redis
            for gap_ms, lane, cost, max_wait in sequence:
                await asyncio.sleep(gap_ms / 1000)
                admission = await limiter.acquire(budget, lane, cost, max_wait=max_wait)
                if admission.granted:
                    admitted += [admission.at] * cost
        return admitted

    admitted = asyncio.run(run())
    assert admitted, "the first arrival is always admitted"
    for window in windows:
        assert over_limit_windows(admitted, window) == 0


async def _saturate(
    limiter: Limiter, budget: Budget, lane: Lane, until: float, admitted: list[tuple[Lane, float]]
) -> None:
    while time.monotonic() < until:
        admission = await limiter.acquire(budget, lane)
        if admission.granted:
            admitted.append((lane, admission.at))
        await asyncio.sleep(admission.wait)


def _rate(admitted: list[tuple[Lane, float]], start: float, end: float) -> Counter[Lane]:
    return Counter(lane for lane, moment in admitted if start <= moment < end)


async def _run_lanes(
    limiter: Limiter, budget: Budget, lanes: list[Lane], seconds: float
) -> tuple[list[tuple[Lane, float]], float]:
    admitted: list[tuple[Lane, float]] = []
    until = time.monotonic() + seconds
    started_at = time.time()
    await asyncio.gather(*(_saturate(limiter, budget, lane, until, admitted) for lane in lanes))
    return admitted, started_at


@pytest.mark.parametrize(
    ("lanes", "share"),
    [([Lane.LOW] * 4, 0.7), ([Lane.LOW] * 3 + [Lane.MEDIUM] * 3, 0.8)],
    ids=["low-alone", "low-and-medium"],
)
@pytest.mark.slow
@pytest.mark.faults  # a measured rate: run alone
async def test_lower_lanes_stop_at_their_ceiling(
    make_limiter: MakeLimiter, make_budget: MakeBudget, lanes: list[Lane], share: float
) -> None:
    """Low alone runs at about 70 % of the limit; low and medium together at about 80 %."""
    limiter, budget = make_limiter(), make_budget(20, 1.0)
    admitted, started_at = await _run_lanes(limiter, budget, lanes, 3.0)
    served = sum(_rate(admitted, started_at + 1.0, started_at + 3.0).values()) / 2.0 / 20
    assert share - 0.08 <= served <= share + 0.01


@pytest.mark.slow
@pytest.mark.faults  # a measured rate: run alone
async def test_high_is_admitted_at_once_and_reaches_the_full_limit(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """While low and medium saturate their ceilings, high is admitted at once and fills to 100 %."""
    limiter, budget = make_limiter(), make_budget(20, 1.0)
    background = asyncio.create_task(
        _run_lanes(limiter, budget, [Lane.LOW] * 3 + [Lane.MEDIUM] * 3, 4.0)
    )
    await asyncio.sleep(1.0)
    first = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
    assert first.granted
    assert first.wait == 0
    high, high_started = await _run_lanes(limiter, budget, [Lane.HIGH] * 3, 2.5)
    others, _ = await background
    window = (high_started + 0.5, high_started + 2.5)
    counts = _rate(high + others, *window)
    assert sum(counts.values()) / 2.0 / 20 >= 0.9
    assert counts[Lane.HIGH] / 2.0 >= 20 * 0.2 * 0.9  # at least the 20 % the others leave free


@pytest.mark.slow
@pytest.mark.faults  # a measured rate: run alone
async def test_small_limit_does_not_starve_low(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """At 1 request per window, low still gets 0.7 per window over 60 windows (7 per 10).

    The windows are 100 ms so that 60 of them take 6 s; the checks scale with the
    window, so a 1-per-second budget behaves the same over a minute.
    """
    limiter, budget = make_limiter(), make_budget(1, 0.1)
    admitted, started_at = await _run_lanes(limiter, budget, [Lane.LOW] * 3, 6.0)
    per_window = sum(_rate(admitted, started_at, started_at + 6.0).values()) / 60
    assert 0.6 <= per_window <= 0.72


@pytest.fixture
def strict_market() -> Iterator[str]:
    """A strict market (20/s) in its own process, refusing any arrival over the limit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.strict_market", "--port", str(port), "--limit", "20"]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/stats", timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait()


@pytest.mark.slow
@pytest.mark.faults  # a measured rate: run alone
@pytest.mark.timeout(120)
def test_processes_hammering_one_budget_never_exceed_the_market(
    redis_server: RedisServer, strict_market: str
) -> None:
    """3 processes x 8 tasks in all lanes through one budget: a strict market refuses nothing."""
    run = Run(
        contender="lanes-mixed",
        limit=20,
        tasks=8,
        processes=3,
        seconds=4.0,
        margin_ms=50.0,
        redis_url=redis_server.url,
        market_url=strict_market,
        start_at=time.time() + 3.0,
    )
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(run.processes, mp_context=context) as pool:
        reports = list(pool.map(process_main, [run] * run.processes))
    with urllib.request.urlopen(f"{strict_market}/stats") as reply:
        market = json.loads(reply.read())
    assert market["refused"] == 0
    assert market["accepted"] / run.seconds >= 20 * 0.8
    assert sum(report.errors for report in reports) == 0


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_flushall_under_load_is_held_to_the_limit_at_the_market(
    own_redis: OwnRedis,
) -> None:
    """A Redis that lost nothing for long, 30 callers on a 10/s budget, and two FLUSHALLs
    during the run (the connections kept, the server's run unchanged): a strict market
    that refuses any arrival over 10 in a trailing second refuses none. The callers
    sleeping on reservations when the flush came are admitted anew, not sent into the
    first window of the emptied Redis (rule 10)."""
    client = own_redis.store.client
    # A wide margin: the test is about the flush (19 where 10 are allowed), not about
    # a loaded host's last milliseconds.
    budget = Budget("acme:orders", (Window(limit=10, seconds=1.0),), margin_ms=100)
    await mark_epochs(client)
    run, since = (await client.get(budget.epoch_key)).decode().split(":")
    await client.set(budget.epoch_key, f"{run}:{int(since) - 2_000_000}")  # known for 2 s
    limiter = Limiter(client)
    stop = asyncio.Event()

    async def caller(session: aiohttp.ClientSession, url: str) -> None:
        while not stop.is_set():
            ticket = await limiter.admit(budget, Lane.HIGH)
            if stop.is_set() or not ticket.may_send():
                await limiter.release(budget, ticket.members)
                continue
            async with session.get(f"{url}/call") as answer:
                await answer.read()

    with market_process(10) as url:
        async with aiohttp.ClientSession() as session:
            callers = [asyncio.create_task(caller(session, url)) for _ in range(30)]
            for _ in range(2):
                await asyncio.sleep(2.0)
                await client.flushall()
            await asyncio.sleep(2.5)
            stop.set()
            await asyncio.wait(callers, timeout=10)
            for task in callers:
                task.cancel()
            async with session.get(f"{url}/stats") as answer:
                stats = await answer.json()
    await limiter.aclose()
    assert stats["refused"] == 0, stats
    assert stats["accepted"] >= 20
