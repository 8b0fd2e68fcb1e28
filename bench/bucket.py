"""Benchmark: the exact bucket against a market's leaky bucket (Cafe24's 40 + 2/s).

P processes x C tasks (8 x 20) call a strict market (`bench.strict_market --bucket 40
--refill 2`, in its own process) through `MarketClient` for `--seconds` each run, on
one Redis: each lane alone and all three together (tasks round-robin over the lanes),
once with the budget as the bucket (`bucket = {size = 40, refill_per_second = 2}`) and
once as a sliding window of 40 per 20 s. Per row: calls the market served in the run,
what the bucket allows the lane in that time (its share of the size at once, then one
call per refill moment inside the run: `floor(ceiling x 40) + ceil(2 x seconds) - 1`;
all lanes together the whole 40), their
ratio, and the market's refusals (429).

The host is shared: numbers vary between runs. Run:

    python -m bench.bucket                  # 8 runs of 30 s, about 5 minutes
    python -m bench.bucket --seconds 20 --lanes high,all
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis
import redis.asyncio as aioredis

from bench.budget import http_json, warm
from lanes import Lane, Limiter, Window, configure_logging
from lanes.config import Bucket
from lanes.policy import DEFAULT_POLICIES
from markets.client import Call, MarketClient, send_check_trace
from markets.config import EndpointConfig, MarketConfig
from markets.errors import RateLimited
from scripts.local.services import RedisServer, free_port

__all__ = ["main"]

_SIZE, _REFILL = 40, 2.0
_LANES = {"high": (Lane.HIGH,), "medium": (Lane.MEDIUM,), "low": (Lane.LOW,)}
_ALL = (Lane.HIGH, Lane.MEDIUM, Lane.LOW)


@dataclass(frozen=True)
class Run:
    redis_url: str
    market_url: str
    limit: str  # "bucket" or "window"
    lanes: tuple[Lane, ...]
    tasks: int
    start_at: float
    seconds: float
    margin_ms: float


def _config(run: Run) -> MarketConfig:
    limit: dict[str, Any] = (
        {"bucket": Bucket(size=_SIZE, refill_per_second=_REFILL)}
        if run.limit == "bucket"
        else {"windows": (Window(limit=_SIZE, seconds=_SIZE / _REFILL),)}
    )
    return MarketConfig(
        base_url=run.market_url,
        margin_ms=run.margin_ms,
        options={"cooldown_seconds": "1"},
        endpoints={"call": EndpointConfig(path="/call", **limit)},
    )


async def _process(run: Run) -> int:
    """This process's tasks, each calling until the run's end; returns its 429s."""
    client = aioredis.Redis.from_url(run.redis_url)
    end = run.start_at + run.seconds
    refused = 0
    async with aiohttp.ClientSession(trace_configs=[send_check_trace()]) as http:
        limiter = Limiter(client, restart_guard=False)
        market = MarketClient("bench", _config(run), http, limiter)
        await limiter.warm_up()

        async def task(index: int) -> None:
            nonlocal refused
            lane = run.lanes[index % len(run.lanes)]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, end - time.time())):
                    while True:
                        try:
                            await market.send(Call("call"), lane, seller=None)
                        except RateLimited:
                            refused += 1

        await asyncio.sleep(max(0.0, run.start_at - time.time()))
        await asyncio.gather(*(task(i) for i in range(run.tasks)))
        await limiter.aclose()
    await client.aclose()
    return refused


def process_main(run: Run) -> int:
    configure_logging("error")
    return asyncio.run(_process(run))


def _allowed(lanes: tuple[Lane, ...], seconds: float) -> int:
    """The most the market's bucket lets these lanes have in `seconds` from empty, as the
    run counts them (from its start, not its end: [start, start + seconds)): their share
    at once, then one call at each refill moment k / refill inside the run, the last
    at the end of the run excluded (40 + 59 in 30 s, not 40 + 60)."""
    ceiling = max(DEFAULT_POLICIES[lane].ceiling for lane in lanes)
    return math.floor(ceiling * _SIZE) + math.ceil(_REFILL * seconds) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description="The exact bucket against a leaky bucket.")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--lanes", default="high,medium,low,all")
    # The market's default (25 ms) leaves a tolerance of 15 ms, which a host shared by
    # many processes often misses: a late send is moved to now or asked anew.
    parser.add_argument("--margin-ms", type=float, default=100.0)
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "bench.strict_market", "--port", str(port), "--limit", "1",
               "--bucket", str(_SIZE), "--refill", str(_REFILL)]  # fmt: skip
    market = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for _ in range(400):
            try:
                http_json(f"{url}/stats")
                break
            except OSError:
                time.sleep(0.05)
        context = multiprocessing.get_context("spawn")
        with (
            RedisServer() as server,
            ProcessPoolExecutor(args.processes, mp_context=context) as pool,
        ):
            list(pool.map(warm, range(args.processes)))
            admin = redis.Redis.from_url(server.url)
            for limit in ("bucket", "window"):
                for name in args.lanes.split(","):
                    lanes = _ALL if name == "all" else _LANES[name]
                    admin.flushall()
                    http_json(f"{url}/reset", "POST")
                    time.sleep(_SIZE / _REFILL / 20)  # the market's bucket is empty anyway
                    start = time.time() + 2.0
                    run = Run(
                        server.url, url, limit, lanes, args.tasks, start, args.seconds,
                        args.margin_ms,
                    )  # fmt: skip
                    refused = sum(pool.map(process_main, [run] * args.processes))
                    answers = http_json(f"{url}/log")
                    served = sum(
                        1 for at, status in answers
                        if status == 200 and start <= at < start + args.seconds
                    )  # fmt: skip
                    allowed = _allowed(lanes, args.seconds)
                    rows.append((limit, name, served, allowed, served / allowed, refused))
                    print(f"  {limit} {name}: {served} served", file=sys.stderr, flush=True)
    finally:
        market.terminate()
        market.wait()
    print(
        f"\n{args.processes} processes x {args.tasks} tasks, {args.seconds:g} s per run; "
        f"the market: a bucket of {_SIZE} + {_REFILL:g}/s"
    )
    print(f"{'budget':<22} {'lanes':<7} {'served':>7} {'allowed':>8} {'ratio':>6} {'429':>5}")
    for limit, name, served, allowed, ratio, refused in rows:
        budget = "bucket 40 + 2/s" if limit == "bucket" else "window 40 / 20 s"
        print(f"{budget:<22} {name:<7} {served:>7} {allowed:>8.0f} {ratio:>6.3f} {refused:>5}")


if __name__ == "__main__":
    main()
