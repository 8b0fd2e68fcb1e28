"""Benchmark: the lanes budget against peer rate limiters on one Redis and one strict market.

P processes x C tasks call a strict market (`bench.strict_market`, in its own
process) as fast as their limiter lets them, for S seconds, once per
contender, all on one Redis:

- lanes (high only, low only, all three lanes),
- the `limits` library's moving window (refused hits sleep until its reset time),
- pyrate-limiter's RedisBucket (its own blocking acquire),
- aiolimiter in each process with limit / P (no shared store).

Printed per contender: served per second / limit, requests the market refused,
Redis commands per served request (server side, INFO commandstats, commands
run inside Lua scripts included), client round trips per served request, and
the latency of one Redis call (p50/p99). Run:

    python -m bench.budget --limit 50 --processes 4 --tasks 20 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis
import redis.asyncio as aioredis

from lanes import Budget, Lane, Limiter, Window
from scripts.services import RedisServer, free_port

CONTENDERS = ("lanes-high", "lanes-low", "lanes-mixed", "limits", "pyrate", "aiolimiter")
_JITTER_S = 0.02


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


@dataclass
class ProcessReport:
    round_trips: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    sent_by_lane: Counter[str] = field(default_factory=Counter)
    errors: int = 0


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


Admit = Callable[[Lane], Awaitable[None]]


async def _lanes_admit(run: Run, client: aioredis.Redis) -> Admit:
    limiter = Limiter(client)
    budget = Budget("bench:call", (Window(limit=run.limit, seconds=1.0),), margin_ms=run.margin_ms)

    async def admit(lane: Lane) -> None:
        await limiter.wait(budget, lane)

    return admit


async def _limits_admit(run: Run, client: aioredis.Redis) -> Admit:
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


async def _pyrate_admit(run: Run, client: aioredis.Redis) -> Admit:
    from pyrate_limiter import Duration, Rate, RedisBucket
    from pyrate_limiter import Limiter as PyrateLimiter

    bucket = await RedisBucket.init([Rate(run.limit, Duration.SECOND)], client, "bench")
    limiter = PyrateLimiter(bucket)

    async def admit(_lane: Lane) -> None:
        await limiter.try_acquire_async("bench", blocking=True)

    return admit


async def _aiolimiter_admit(run: Run, client: aioredis.Redis) -> Admit:
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
    if contender == "lanes-low":
        return Lane.LOW
    if contender == "lanes-mixed":
        return (Lane.HIGH, Lane.MEDIUM, Lane.LOW)[index % 3]
    return Lane.HIGH


async def _process(run: Run) -> ProcessReport:
    report = ProcessReport()
    _instrument_redis(report)
    client = aioredis.Redis.from_url(run.redis_url)
    admit = await _FACTORIES[run.contender.split("-")[0]](run, client)
    report.round_trips, report.latencies_ms = 0, []  # set-up calls are not acquires
    end = run.start_at + run.seconds
    async with aiohttp.ClientSession() as http:

        async def task(index: int) -> None:
            lane = _lane_of_task(run.contender, index)
            while time.time() < end:
                await admit(lane)
                if time.time() >= end:
                    return
                try:
                    async with http.get(f"{run.market_url}/call") as response:
                        await response.read()
                except aiohttp.ClientError:
                    report.errors += 1
                    continue
                report.sent_by_lane[lane.value] += 1

        await asyncio.sleep(max(0.0, run.start_at - time.time()))
        await asyncio.gather(*(task(i) for i in range(run.tasks)))
    await client.aclose()
    return report


def process_main(run: Run) -> ProcessReport:
    return asyncio.run(_process(run))


def _http(url: str, method: str = "GET") -> dict[str, int]:
    import json

    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as reply:
        result: dict[str, int] = json.loads(reply.read())
        return result


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    args: argparse.Namespace, contender: str, redis_url: str, market_url: str
) -> dict[str, Any]:
    admin = redis.Redis.from_url(redis_url)
    admin.flushall()
    admin.config_resetstat()
    _http(f"{market_url}/reset", "POST")
    run = Run(
        contender=contender,
        limit=args.limit,
        tasks=args.tasks,
        processes=args.processes,
        seconds=args.seconds,
        margin_ms=args.margin_ms,
        redis_url=redis_url,
        market_url=market_url,
        start_at=time.time() + 2.0,
    )
    with ProcessPoolExecutor(
        args.processes, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        reports = list(pool.map(process_main, [run] * args.processes))
    market = _http(f"{market_url}/stats")
    commands = sum(
        stats["calls"]
        for name, stats in admin.info("commandstats").items()
        if name not in ("cmdstat_info", "cmdstat_config", "cmdstat_flushall")
    )
    admin.close()
    served = market["accepted"]
    lanes: Counter[str] = Counter()
    for report in reports:
        lanes.update(report.sent_by_lane)
    latencies = [value for report in reports for value in report.latencies_ms]
    round_trips = sum(report.round_trips for report in reports)
    total_sent = sum(lanes.values()) or 1
    return {
        "contender": contender,
        "served_ratio": served / args.seconds / args.limit,
        "refused": market["refused"],
        "commands_per_served": commands / served if served else float("nan"),
        "round_trips_per_served": round_trips / served if served else float("nan"),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "lane_share": {lane: lanes[lane] / total_sent for lane in ("high", "medium", "low")},
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'contender':<12} {'served/limit':>12} {'refused':>8} {'cmds/served':>12} "
        f"{'trips/served':>13} {'p50 ms':>7} {'p99 ms':>7}  lane shares (h/m/l)"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        shares = "/".join(f"{row['lane_share'][lane]:.2f}" for lane in ("high", "medium", "low"))
        lines.append(
            f"{row['contender']:<12} {row['served_ratio']:>12.3f} {row['refused']:>8} "
            f"{row['commands_per_served']:>12.2f} {row['round_trips_per_served']:>13.2f} "
            f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f}  {shares}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=50, help="market limit per second")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=20, help="tasks per process")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    parser.add_argument("--margin-ms", type=float, default=25.0, help="lanes safety margin")
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=list(CONTENDERS))
    args = parser.parse_args()

    port = free_port()
    market = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.strict_market",
            "--port",
            str(port),
            "--limit",
            str(args.limit),
        ]
    )
    market_url = f"http://127.0.0.1:{port}"
    try:
        with RedisServer() as server:
            for _ in range(100):
                try:
                    _http(f"{market_url}/stats")
                    break
                except OSError:
                    time.sleep(0.05)
            print(
                f"limit {args.limit}/s, {args.processes} processes x {args.tasks} tasks, "
                f"{args.seconds:.0f} s per contender, lanes margin {args.margin_ms:.0f} ms",
                flush=True,
            )
            rows = []
            for contender in args.only:
                rows.append(measure(args, contender, server.url, market_url))
                print(f"  {contender}: done", flush=True)
            print(_table(rows))
            base = next((row for row in rows if row["contender"] == "lanes-high"), None)
            if base:
                print("\nratios against lanes-high (served/limit, cmds/served):")
                for row in rows:
                    if row is base:
                        continue
                    served = row["served_ratio"] / base["served_ratio"]
                    commands = row["commands_per_served"] / base["commands_per_served"]
                    name = row["contender"]
                    print(f"  {name:<12} served x{served:.2f}, commands x{commands:.1f}")
    finally:
        market.terminate()
        market.wait()


if __name__ == "__main__":
    main()
