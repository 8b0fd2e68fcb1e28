"""Benchmark: many per-seller budgets (issue 20): Redis memory, expiry, one node vs a Cluster.

`--budgets` (default 10,000) budgets of one per-seller endpoint (`bench:orders:<seller>`,
`--limit` per second, the default 25 ms margin), on one `redis-server` and on a
`--nodes`-node Redis Cluster (default 3), both started here on free loopback ports:

- bytes per budget, active: MEMORY USAGE of a budget's keys (log, state, and the demand
  mark with `--lend`) right after one full window was admitted to it (500 sampled);
- bytes per budget, idle: the same once every window has passed (what an idle budget keeps);
- keys left after the windows pass, by kind; the slots' epoch keys (one per hash slot that
  holds a budget, at most 16,384, no expiry: docs/DESIGN.md rule 10) are the documented
  sentinels and are counted apart;
- admissions per second: `--callers` concurrent acquires (this process, one client) over
  random budgets for `--seconds`, one node against the Cluster.

Numbers, not asserts; the client is one Python process, so on a small host it is the
client, not Redis, that bounds the admissions (the table says how loaded the host was).

    python -m bench.budget_scale
    python -m bench.budget_scale --budgets 2000 --seconds 3      # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import time
from collections import Counter

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from bench.cluster import redis_cluster
from lanes import Budget, Lane, Limiter, Window, configure_logging
from lanes.budget import PACE_BURST
from scripts.local.services import RedisServer

_KINDS = ("log", "state", "demand")


def _budgets(args: argparse.Namespace) -> list[Budget]:
    window = (Window(limit=args.limit, seconds=1.0),)
    return [
        Budget(f"bench:orders:s{n}", window, margin_ms=25.0, lend_idle=args.lend)
        for n in range(args.budgets)
    ]


async def _fill(
    limiter: Limiter,
    client: aioredis.Redis | RedisCluster,
    budgets: list[Budget],
    callers: int,
) -> float:
    """Every budget's whole window admitted (in bursts of the pace's size at most); returns
    the mean bytes of a sample of budgets, each read right after its window was filled."""
    queue = list(budgets)
    sample = set(random.Random(7).sample(range(len(budgets)), min(500, len(budgets))))
    sampled: list[int] = []

    async def caller() -> None:
        while queue:
            budget = queue.pop()
            left = budget.windows[0].limit
            while left > 0:
                cost = min(left, budget.capacity, PACE_BURST)
                admission = await limiter.acquire(budget, Lane.HIGH, cost, max_wait=0.0)
                if admission.granted:
                    left -= cost
                else:
                    await asyncio.sleep(admission.wait)
            if len(queue) in sample:
                sampled.append(await _bytes(client, [budget]))

    await asyncio.gather(*(caller() for _ in range(callers)))
    return sum(sampled) / len(sampled)


async def _bytes(client: aioredis.Redis | RedisCluster, budgets: list[Budget]) -> float:
    """Mean MEMORY USAGE (bytes) of a budget's keys, over a sample of the budgets."""
    sample = random.Random(7).sample(budgets, min(500, len(budgets)))
    total = 0
    for budget in sample:
        for key in (budget.log_key, budget.state_key, budget.demand_key):
            total += await client.memory_usage(key) or 0
    return total / len(sample)


async def _keys(client: aioredis.Redis | RedisCluster) -> Counter[str]:
    """Keys by kind: a budget's `log`/`state`/`demand`, or the slots' `epoch` sentinels."""
    kinds: Counter[str] = Counter()
    async for key in client.scan_iter(match="lanes:*", count=1000):
        name = key.decode()
        kinds["epoch" if name.startswith("lanes:epoch:") else name.rsplit(":", 1)[-1]] += 1
    return kinds


async def _rate(limiter: Limiter, budgets: list[Budget], callers: int, seconds: float) -> float:
    """Admissions per second of `callers` concurrent acquires on random budgets."""
    admitted = 0
    stop = time.monotonic() + seconds

    async def caller(seed: int) -> None:
        nonlocal admitted
        pick = random.Random(seed)
        while time.monotonic() < stop:
            budget = pick.choice(budgets)
            if (await limiter.acquire(budget, Lane.HIGH, max_wait=0.0)).granted:
                admitted += 1

    started = time.monotonic()
    await asyncio.gather(*(caller(seed) for seed in range(callers)))
    return admitted / (time.monotonic() - started)


@dataclasses.dataclass
class Row:
    topology: str
    active: float
    idle: float
    left: Counter[str]
    rate: float


async def _measure(
    topology: str, client: aioredis.Redis | RedisCluster, args: argparse.Namespace
) -> Row:
    budgets = _budgets(args)
    limiter = Limiter(client, restart_guard=True)
    try:
        await limiter.warm_up()
        active = await _fill(limiter, client, budgets, args.callers)
        # Every window (1 s + margin), the logs' 5 s to spare and the demand marks' hold.
        await asyncio.sleep(1.0 + 5.0 + 1.5)
        idle = await _bytes(client, budgets)
        left = await _keys(client)
        rate = await _rate(limiter, budgets, args.callers, args.seconds)
    finally:
        await limiter.aclose()
    return Row(topology, active, idle, left, rate)


async def _single(args: argparse.Namespace) -> Row:
    with RedisServer() as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            return await _measure("1 node", client, args)
        finally:
            await client.aclose()


async def _cluster(args: argparse.Namespace) -> Row:
    with redis_cluster(args.nodes) as ports:
        client = RedisCluster(host="127.0.0.1", port=ports[0])
        await client.initialize()
        try:
            return await _measure(f"{args.nodes}-node Cluster", client, args)
        finally:
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=5, help="each budget's limit per second")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--callers", type=int, default=64, help="concurrent acquires")
    parser.add_argument("--seconds", type=float, default=5.0, help="the admissions run")
    parser.add_argument("--lend", action="store_true", help="budgets with lend_idle")
    args = parser.parse_args()
    configure_logging("error")
    rows = [asyncio.run(_single(args)), asyncio.run(_cluster(args))]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{args.budgets} per-seller budgets of {args.limit}/s, lend_idle={args.lend}, "
        f"{args.callers} callers in one process, load average {load} on {os.cpu_count()} cores"
    )
    print("| topology | bytes/budget active | bytes/budget idle | keys left after the windows "
          "(budget keys; slot epochs) | admissions/s |")  # fmt: skip
    print("|---|---|---|---|---|")
    for row in rows:
        budget_keys = ", ".join(f"{kind} {row.left[kind]}" for kind in _KINDS)
        print(
            f"| {row.topology} | {row.active:.0f} | {row.idle:.0f} | {budget_keys}; "
            f"epoch {row.left['epoch']} | {row.rate:.0f} |"
        )


if __name__ == "__main__":
    main()
