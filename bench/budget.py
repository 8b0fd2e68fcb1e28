"""Benchmark: the lanes budget under stress, and against peer rate limiters.

P processes x C tasks call a strict market (`bench.strict_market`, in its own
process) as fast as their limiter lets them, all on one Redis. Scenarios
(`--scenario`, default all), printed as one table:

- `lanes`: limit 500/s, 8 x 20, each lane alone and all three together; served
  per second in the steady state (from a window after the market's first
  acceptance to the end) / the lane's ceiling, requests the market refused, Redis commands
  per served request (server side, INFO commandstats, commands inside Lua
  included) and client round trips per served request;
- `hogs`: limit 50/s, 4 x 20, all lanes, with `--hogs N` busy processes beside it;
- `storm`: a budget at twice what the market allows, through `MarketClient`
  (high lane); the market refuses everything for its cooldown after a refusal
  (`storm` sends Retry-After, `storm-backoff` does not): 429s after the first of
  each cooldown, those sent into a cooldown already set, the time until high
  is served again, the longest cooldown applied;
- `cost`: a budget of 1000/s plus a long window whose log holds 1k, 10k, 100k
  entries: Redis microseconds per admitted request (INFO commandstats);
- `peers`: limit 50/s, 4 x 20: lanes (high), the `limits` library's moving
  window, pyrate-limiter's RedisBucket, aiolimiter with limit / P per process;
- `share`: the whole limit, side by side in one run: 50/s with 4 x 20 and 500/s
  with 8 x 20, each lane alone, all three, pyrate-limiter and `limits`, without
  and with `--hogs` busy processes; whole-run share (accepted / (ceiling x limit
  x seconds), start-up included) and steady-state share, refusals, commands per
  served request (warm-up included), and the late wakes: late (given back), moved
  to now, handed (sent by another caller before its owner woke), lost (asked anew).

The host is shared: numbers vary between runs; run it twice. Run:

    python -m bench.budget                       # everything, about 8 minutes
    python -m bench.budget --scenario share --seconds 10 --hogs 2
    python -m bench.budget --scenario lanes --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis
import redis.asyncio as aioredis

from lanes import Budget, Lane, Limiter, Window, configure_logging
from lanes.limiter import Ticket
from markets.client import Call, MarketClient, send_check_trace
from markets.config import EndpointConfig, MarketConfig
from markets.errors import LateSend, RateLimited
from scripts.local.services import RedisServer, free_port

SCENARIOS = ("share", "lanes", "hogs", "storm", "cost", "peers")
CONTENDERS = (
    "lanes-high", "lanes-medium", "lanes-low", "lanes-mixed", "limits", "pyrate", "aiolimiter"
)  # fmt: skip
_CEILING = {"lanes-medium": 0.8, "lanes-low": 0.7}
_JITTER_S = 0.02
_STORM_COOLDOWN_S = 2.0
_STORM_MAX_S = 4.0


@dataclass
class Run:
    contender: str
    limit: int
    tasks: int
    processes: int
    seconds: float
    margin_ms: float
    redis_url: str
    market_url: str
    start_at: float
    budget_limit: int = 0  # the budget's limit when not the market's (a storm)
    storm: bool = False
    tolerance_ms: float | None = None  # None: the limiter's default share of the margin
    cooldown_s: float = 1.0  # the market's `cooldown_seconds` in a storm


@dataclass
class ProcessReport:
    round_trips: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    sent_by_lane: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    # storm: (sent, answered, status) per request; moments cooldowns began; cooldowns applied
    calls: list[tuple[float, float, int]] = field(default_factory=list)
    cooldowns_began: list[float] = field(default_factory=list)
    cooldowns: list[float] = field(default_factory=list)
    lateness: dict[str, int] = field(default_factory=dict)
    widths_ms: list[float] = field(default_factory=list)  # of the Redis clock bounds


def _instrument_redis(report: ProcessReport) -> None:
    """Count and time every redis-py round trip in this process (all contenders use redis-py)."""
    original = aioredis.Redis.execute_command

    async def timed(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(self, *args, **options)
        finally:
            report.round_trips += 1
            report.latencies_ms.append((time.perf_counter() - started) * 1000)

    aioredis.Redis.execute_command = timed  # type: ignore[method-assign]


Admit = Callable[[Lane], Awaitable[Ticket | None]]


def _budget(run: Run) -> Budget:
    limit = run.budget_limit or run.limit
    return Budget("bench:call", (Window(limit=limit, seconds=1.0),), margin_ms=run.margin_ms)


def _tolerance(run: Run) -> float | None:
    return None if run.tolerance_ms is None else run.tolerance_ms / 1000


async def _lanes_admit(run: Run, client: aioredis.Redis, report: ProcessReport) -> Admit:
    limiter = Limiter(client, tolerance=_tolerance(run), restart_guard=False)
    budget = _budget(run)
    await limiter.warm_up()  # at start, as a worker does: not inside the first requests

    async def admit(lane: Lane) -> Ticket:
        while True:
            ticket = await limiter.admit(budget, lane)
            if ticket.may_send():  # and again when the connection is ready (send_check_trace)
                report.lateness = dict(limiter.lateness.counts)
                low, high = limiter.clock.bounds()
                report.widths_ms.append((high - low) * 1000)
                return ticket
            await limiter.release(budget, ticket.members)

    admit.give_back = limiter.release  # type: ignore[attr-defined]
    return admit


async def _limits_admit(run: Run, client: aioredis.Redis, report: ProcessReport) -> Admit:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    storage = RedisStorage(
        run.redis_url.replace("redis://", "async+redis://"), implementation="redispy"
    )
    strategy = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(run.limit)

    async def admit(_lane: Lane) -> None:
        while not await strategy.hit(item, "bench"):
            stats = await strategy.get_window_stats(item, "bench")
            await asyncio.sleep(
                max(0.001, stats.reset_time - time.time()) + random.uniform(0, _JITTER_S)
            )

    return admit


async def _pyrate_admit(run: Run, client: aioredis.Redis, report: ProcessReport) -> Admit:
    from pyrate_limiter import Duration, Rate, RedisBucket
    from pyrate_limiter import Limiter as PyrateLimiter

    bucket = await RedisBucket.init([Rate(run.limit, Duration.SECOND)], client, "bench")
    limiter = PyrateLimiter(bucket)

    async def admit(_lane: Lane) -> None:
        await limiter.try_acquire_async("bench", blocking=True)

    return admit


async def _aiolimiter_admit(run: Run, client: aioredis.Redis, report: ProcessReport) -> Admit:
    from aiolimiter import AsyncLimiter

    limiter = AsyncLimiter(run.limit / run.processes, 1.0)

    async def admit(_lane: Lane) -> None:
        await limiter.acquire()

    return admit


_FACTORIES = {
    "lanes": _lanes_admit,
    "limits": _limits_admit,
    "pyrate": _pyrate_admit,
    "aiolimiter": _aiolimiter_admit,
}


def _lane_of_task(contender: str, index: int) -> Lane:
    if contender == "lanes-mixed":
        return (Lane.HIGH, Lane.MEDIUM, Lane.LOW)[index % 3]
    if contender.startswith("lanes-"):
        return Lane(contender.split("-", 1)[1])
    return Lane.HIGH


async def _process(run: Run) -> ProcessReport:
    report = ProcessReport()
    _instrument_redis(report)
    client = aioredis.Redis.from_url(run.redis_url)
    end = run.start_at + run.seconds
    async with aiohttp.ClientSession(trace_configs=[send_check_trace()]) as http:
        if run.storm:
            task = await _storm_task(run, client, http, report, end)
        else:
            admit = await _FACTORIES[run.contender.split("-")[0]](run, client, report)

            async def task(index: int) -> None:
                lane = _lane_of_task(run.contender, index)
                while time.time() < end:
                    ticket = await admit(lane)
                    if time.time() >= end:
                        return
                    try:
                        async with http.get(
                            f"{run.market_url}/call", trace_request_ctx=ticket
                        ) as response:
                            await response.read()
                    except LateSend:
                        assert ticket is not None
                        await admit.give_back(ticket.budget, ticket.members)  # type: ignore[attr-defined]
                        continue  # stopped before it left
                    except aiohttp.ClientError:
                        report.errors += 1
                        continue
                    report.sent_by_lane[lane.value] += 1

        # Every contender starts with its connections open, as a warmed-up worker does:
        # a handshake inside the first requests would make their tickets late.
        await asyncio.gather(*(_connect(http, run.market_url) for _ in range(run.tasks)))
        report.round_trips, report.latencies_ms = 0, []  # set-up calls are not acquires
        await asyncio.sleep(max(0.0, run.start_at - time.time()))
        await asyncio.gather(*(task(i) for i in range(run.tasks)))
    await client.aclose()
    return report


async def _connect(http: aiohttp.ClientSession, market_url: str) -> None:
    """One connection to the market opened (and pooled) before the run: its stats page,
    which counts no call."""
    async with http.get(f"{market_url}/stats") as response:
        await response.read()


async def _storm_task(
    run: Run,
    client: aioredis.Redis,
    http: aiohttp.ClientSession,
    report: ProcessReport,
    end: float,
) -> Callable[[int], Awaitable[None]]:
    """Each task calls through `MarketClient`, which cools the budget on a 429."""
    config = MarketConfig(
        base_url=run.market_url,
        margin_ms=run.margin_ms,
        options={
            "cooldown_seconds": f"{run.cooldown_s:g}",
            "cooldown_max_seconds": f"{_STORM_MAX_S:g}",
        },
        endpoints={"call": EndpointConfig(path="/call", rps=run.budget_limit)},
    )
    limiter = Limiter(client, tolerance=_tolerance(run), restart_guard=False)
    market = MarketClient("bench", config, http, limiter)

    async def task(_index: int) -> None:
        while time.time() < end:
            sent = 0.0

            def mark() -> None:
                nonlocal sent
                sent = time.time()

            try:
                await market.send(Call("call"), Lane.HIGH, seller=None, on_sent=mark)
                status = 200
            except RateLimited as exc:
                status = 429
                report.cooldowns.append(exc.retry_after or 0.0)
            report.calls.append((sent, time.time(), status))
            if status == 200:
                report.sent_by_lane["high"] += 1

    original = limiter.pauses.cool_down

    async def noting(*args: Any, **options: Any) -> Any:
        came = time.time()  # the 429 reached the budget's owner here
        cooled = await original(*args, **options)
        if cooled.new:
            report.cooldowns_began.append(came)
        return cooled

    limiter.pauses.cool_down = noting  # type: ignore[method-assign]
    return task


def process_main(run: Run) -> ProcessReport:
    configure_logging("error")  # a log line per event would cost the CPU being measured
    return asyncio.run(_process(run))


def warm(_index: int) -> None:
    """A pool task that holds its worker process, so every process starts before the run."""
    time.sleep(0.5)


def http_json(url: str, method: str = "GET") -> Any:
    """The strict market's control routes (`/stats`, `/log`, `/reset`) answer JSON."""
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as reply:
        return json.loads(reply.read())


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# Not per-request work: the bench's own calls and each new connection's handshake.
_NOT_COUNTED = ("info", "config", "flushall", "hello", "client", "subscribe", "unsubscribe")


def _commands(admin: redis.Redis) -> int:
    return sum(
        stats["calls"]
        for name, stats in admin.info("commandstats").items()
        if name.removeprefix("cmdstat_") not in _NOT_COUNTED
    )


def run_processes(run: Run) -> list[ProcessReport]:
    """Start the processes first (imports take seconds on a loaded host), then run them."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(run.processes, mp_context=context) as pool:
        list(pool.map(warm, range(run.processes)))
        run.start_at = time.time() + 1.0
        return list(pool.map(process_main, [run] * run.processes))


def measure(args: argparse.Namespace, scenario: str, contender: str, redis_url: str,
            market_url: str, *, limit: int, processes: int, budget_limit: int = 0,
            storm: bool = False, cooldown_s: float = 1.0) -> dict[str, Any]:  # fmt: skip
    admin = redis.Redis.from_url(redis_url)
    admin.flushall()
    admin.config_resetstat()
    http_json(f"{market_url}/reset", "POST")
    run = Run(
        contender=contender,
        limit=limit,
        tasks=args.tasks,
        processes=processes,
        seconds=args.seconds,
        margin_ms=args.margin_ms,
        redis_url=redis_url,
        market_url=market_url,
        start_at=0.0,
        budget_limit=budget_limit,
        storm=storm,
        tolerance_ms=args.tolerance_ms,
        cooldown_s=cooldown_s,
    )
    reports = run_processes(run)
    market = http_json(f"{market_url}/stats")
    answers = http_json(f"{market_url}/log")
    commands = _commands(admin)
    admin.close()
    served = market["accepted"]
    lanes: Counter[str] = Counter()
    lateness: Counter[str] = Counter()
    for report in reports:
        lanes.update(report.sent_by_lane)
        lateness.update(report.lateness)
    round_trips = sum(report.round_trips for report in reports)
    row: dict[str, Any] = {
        "scenario": scenario,
        "contender": contender,
        "limit": limit,
        "served_ratio": _steady_rate(answers, run.start_at + run.seconds)
        / limit
        / _CEILING.get(contender, 1.0),
        "whole_ratio": served / (limit * _CEILING.get(contender, 1.0) * run.seconds),
        "refused": market["refused"],
        "commands_per_served": commands / served if served else float("nan"),
        "round_trips_per_served": round_trips / served if served else float("nan"),
        "given_back": lateness.get("given_back", 0),
        "moved": lateness.get("moved", 0),
        "handed": lateness.get("handed", 0),
        "lost": lateness.get("given_back", 0) - lateness.get("moved", 0),
        "lateness": dict(lateness),
        "clock_width_ms": _percentile([w for r in reports for w in r.widths_ms], 0.5),
    }
    if storm:
        row.update(_storm_figures(reports, answers))
    return row


def _steady_rate(answers: list[list[float]], end: float) -> float:
    """Accepted per second from one window (1 s) after the market's first acceptance to
    the run's end: the processes' start (imports, connections, script loads) and the first
    window, which has no past to count, are not the budget's steady state."""
    accepted = sorted(moment for moment, status in answers if int(status) == 200)
    if not accepted or end - accepted[0] <= 1.0:
        return float("nan")
    start = accepted[0] + 1.0
    return sum(1 for moment in accepted if start <= moment < end) / (end - start)


def _storm_figures(reports: list[ProcessReport], answers: list[list[float]]) -> dict[str, Any]:
    """Per cooldown (from the first 429 of a burst to the next 2xx): 429s after the first,
    requests in flight when the first came back to its worker, 429s of requests sent
    after that, and the time from the market's first 429 until served again."""
    calls = sorted(call for report in reports for call in report.calls)
    began = sorted(moment for report in reports for moment in report.cooldowns_began)
    ordered = sorted((moment, int(status)) for moment, status in answers)
    after_first = into_cooldown = bursts = in_flight = 0
    recoveries: list[float] = []
    index = 0
    while index < len(ordered):
        moment, status = ordered[index]
        if status != 429:
            index += 1
            continue
        bursts += 1
        first = moment
        index += 1
        while index < len(ordered) and ordered[index][1] == 429:
            index += 1
        recovered = ordered[index][0] if index < len(ordered) else float("nan")
        recoveries.append(recovered - first)
        start = next((b for b in began if b >= first - 0.001), float("inf"))
        in_flight += sum(1 for sent, answered, _ in calls if sent < start <= answered)
        for sent, answered, code in calls:
            if code == 429 and first < answered <= recovered + 0.001:
                after_first += 1
                into_cooldown += sent > start
        after_first -= 1  # the burst's own first 429 is in `calls` too
    cooldowns = [value for report in reports for value in report.cooldowns]
    return {
        "bursts": bursts,
        "after_first": after_first,
        "in_flight": in_flight,
        "into_cooldown": into_cooldown,
        "recovery_s": max(recoveries, default=float("nan")),
        "longest_cooldown_s": max(cooldowns, default=0.0),
    }


def _raise_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(-10)


@contextmanager
def market_process(
    limit: int, *, cooldown: float = 0.0, retry_after: bool = False
) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.strict_market", "--port", str(port),
               "--limit", str(limit), "--cooldown", str(cooldown)]  # fmt: skip
    if retry_after:
        command.append("--retry-after")
    # The market stands for a remote server: its clock must not be delayed by the
    # load it measures, so it runs at a higher priority where allowed (root).
    market = subprocess.Popen(command, preexec_fn=_raise_priority)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                http_json(f"{url}/stats")
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        market.terminate()
        market.wait()


@contextmanager
def hogs(count: int) -> Iterator[None]:
    """`count` busy processes (pure Python loops) for the length of the block."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


_SHARE_CONTENDERS = (
    "lanes-high", "lanes-medium", "lanes-low", "lanes-mixed", "pyrate", "limits"
)  # fmt: skip


def share_rows(args: argparse.Namespace, redis_url: str) -> list[dict[str, Any]]:
    """Every contender at 50/s (4 x tasks) and 500/s (8 x tasks), then again with hogs."""
    rows = []
    for hogged in (0, args.hogs) if args.hogs else (0,):
        for limit, processes in ((50, 4), (500, 8)):
            with market_process(limit) as url, hogs(hogged):
                for contender in [c for c in _SHARE_CONTENDERS if c in args.only]:
                    row = measure(args, "share", contender, redis_url, url,
                                  limit=limit, processes=processes)  # fmt: skip
                    if hogged:
                        row["contender"] = f"{contender} +{hogged} hogs"
                    rows.append(row)
                    print(f"  share {limit}/s {row['contender']}: done", flush=True)
    return rows


def cost_rows(redis_url: str, sizes: list[int]) -> list[dict[str, Any]]:
    return asyncio.run(_cost_rows(redis_url, sizes))


async def _cost_rows(redis_url: str, sizes: list[int]) -> list[dict[str, Any]]:
    """A budget of 1000/s plus a 60 s window whose log already holds `size` entries
    (spread over the past minute, as if filled from empty). With room in the long
    window: Redis microseconds per admitted request (INFO commandstats, the script's
    time) while 64 callers are admitted; with the long window full: per refused call
    (its rank lookups)."""
    rows = []
    client = aioredis.Redis.from_url(redis_url)
    for size in sizes:
        for room in (30_000, 0):
            budget = Budget(
                "bench:cost",
                (Window(limit=1000, seconds=1.0), Window(limit=size + room, seconds=60.0)),
            )
            await _fill(client, budget, size)
            limiter = Limiter(client, restart_guard=False)
            await client.config_resetstat()
            if room:
                counts = await asyncio.gather(
                    *(_admit_for(limiter, budget, 1.5) for _ in range(64))
                )
                admitted = sum(counts)
            else:
                admitted = await _refused_for(limiter, budget, 1.5)
            stats = await client.info("commandstats")
            script = stats.get("cmdstat_evalsha", {"usec": 0, "calls": 0})
            rows.append({
                "scenario": "cost",
                "contender": f"log {size:>6}, " + ("room" if room else "full"),
                "limit": 1000,
                "usec_per_admitted" if room else "usec_per_refused":
                    script["usec"] / admitted if admitted else float("nan"),
            })  # fmt: skip
            await limiter.aclose()
    await client.aclose()
    return rows


async def _fill(client: aioredis.Redis, budget: Budget, size: int) -> None:
    """`size` entries spread over the 58 s before now (outside the 1 s window)."""
    await client.flushall()
    seconds, micros = await client.time()
    now = int(seconds) + int(micros) / 1e6
    async with client.pipeline(transaction=False) as pipe:
        for start in range(0, size, 10_000):
            chunk = range(start, min(size, start + 10_000))
            pipe.zadd(
                budget.log_key,
                {f"old:{i}": round((now - 58.0 + 56.0 * i / size) * 1e6) for i in chunk},
            )
        await pipe.execute()


async def _admit_for(limiter: Limiter, budget: Budget, seconds: float) -> int:
    """Be admitted (batched, with reservations) for `seconds`; the number admitted."""
    admitted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await limiter.admit(budget, Lane.HIGH)
        admitted += 1
    return admitted


async def _refused_for(limiter: Limiter, budget: Budget, seconds: float) -> int:
    """Ask a full budget once per millisecond for `seconds`; the number of calls."""
    calls = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await limiter.acquire(budget, Lane.HIGH, max_wait=0)
        calls += 1
        await asyncio.sleep(0.001)
    return calls


def _cell(row: dict[str, Any], name: str, spec: str) -> str:
    value = row.get(name)
    if value is None:
        return "-"
    return format(value, spec)


_COLUMNS = (
    ("scenario", "scenario", "<6", "s"),
    ("contender", "contender", "<22", "s"),
    ("limit", "limit", ">5", "d"),
    ("whole/ceil", "whole_ratio", ">10", ".3f"),
    ("steady/ceil", "served_ratio", ">11", ".3f"),
    ("refused", "refused", ">7", "d"),
    ("cmds/served", "commands_per_served", ">11", ".2f"),
    ("trips/served", "round_trips_per_served", ">12", ".2f"),
    ("late", "given_back", ">5", "d"),
    ("moved", "moved", ">5", "d"),
    ("handed", "handed", ">6", "d"),
    ("lost", "lost", ">4", "d"),
    ("429 after 1st", "after_first", ">13", "d"),
    ("in flight", "in_flight", ">9", "d"),
    ("into cooldown", "into_cooldown", ">13", "d"),
    ("recovery s", "recovery_s", ">10", ".2f"),
    ("max cool s", "longest_cooldown_s", ">10", ".1f"),
    ("us/admitted", "usec_per_admitted", ">11", ".1f"),
    ("us/refused", "usec_per_refused", ">10", ".1f"),
)


def table(rows: list[dict[str, Any]]) -> str:
    head = " ".join(format(title, align) for title, _, align, _ in _COLUMNS)
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(
            " ".join(format(_cell(row, name, spec), align) for _, name, align, spec in _COLUMNS)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--limit", type=int, default=500, help="market limit of `lanes`, per s")
    parser.add_argument("--processes", type=int, default=8, help="processes of `lanes`")
    parser.add_argument("--tasks", type=int, default=20, help="tasks per process")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each run")
    # The margin is the tolerance (60 %) plus the way to the market; the package's
    # default, 25 ms, bounds the served ratio by 1 / (1 + margin / window) = 0.976.
    parser.add_argument(
        "--margin-ms", type=float, default=25.0, help="lanes safety margin (default 25)"
    )
    parser.add_argument(
        "--tolerance-ms",
        type=float,
        default=None,
        help="lateness tolerance (default 60%% of margin)",
    )
    parser.add_argument("--hogs", type=int, default=2, help="busy processes in `hogs` and `share`")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10_000, 100_000])
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=list(CONTENDERS))
    args = parser.parse_args()
    configure_logging("error")

    rows: list[dict[str, Any]] = []
    print(
        f"{args.tasks} tasks per process, {args.seconds:g} s per run, "
        f"lanes margin {args.margin_ms:g} ms, on a shared host",
        flush=True,
    )
    with RedisServer() as server:
        if "share" in args.scenario:
            rows.extend(share_rows(args, server.url))
        if "lanes" in args.scenario:
            with market_process(args.limit) as url:
                for contender in [c for c in args.only if c.startswith("lanes")]:
                    rows.append(measure(args, "lanes", contender, server.url, url,
                                        limit=args.limit, processes=args.processes))  # fmt: skip
                    print(f"  lanes {contender}: done", flush=True)
        if "hogs" in args.scenario:
            with market_process(50) as url, hogs(args.hogs):
                row = measure(args, "hogs", "lanes-mixed", server.url, url, limit=50, processes=4)
                row["contender"] = f"lanes-mixed +{args.hogs} hogs"
                rows.append(row)
            print("  hogs: done", flush=True)
        if "storm" in args.scenario:
            for retry_after, name in ((True, "storm"), (False, "storm-backoff")):
                with market_process(50, cooldown=_STORM_COOLDOWN_S, retry_after=retry_after) as url:
                    # Without Retry-After the market's catalogue knows its cooldown.
                    row = measure(args, "storm", "lanes-high", server.url, url, limit=50,
                                  processes=4, budget_limit=100, storm=True,
                                  cooldown_s=_STORM_COOLDOWN_S)  # fmt: skip
                    row["contender"] = f"{name} (budget 2x)"
                    rows.append(row)
                print(f"  {name}: done", flush=True)
        if "cost" in args.scenario:
            rows.extend(cost_rows(server.url, args.sizes))
            print("  cost: done", flush=True)
        if "peers" in args.scenario:
            with market_process(50) as url:
                for contender in ("lanes-high", "limits", "pyrate", "aiolimiter"):
                    if contender in args.only:
                        rows.append(measure(args, "peers", contender, server.url, url,
                                            limit=50, processes=4))  # fmt: skip
                print("  peers: done", flush=True)
    print(table(rows))
    if "storm" in args.scenario:
        print(
            f"storm: market 50/s refusing all for {_STORM_COOLDOWN_S:g} s after a refusal; "
            f"recovery must be <= {_STORM_COOLDOWN_S + 1:g} s, cooldowns <= {_STORM_MAX_S:g} s"
        )


if __name__ == "__main__":
    main()
