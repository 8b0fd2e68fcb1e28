"""Benchmark: lending idle headroom (`lend_idle`, docs/DESIGN.md rule 2, "Lending").

One budget of `--limit` per second (25 ms margin) on its own `redis-server`. `--callers`
low-lane callers admit requests as fast as the budget lets them for `--seconds`; after
`--burst-at` seconds a burst of `--burst` high requests arrives at once. Each run is made
with and without `lend_idle`:

- low's served share: requests admitted to low per second, before the burst and from one
  window after the start, over the limit (goal with lending >= 0.97; without, the 0.70
  ceiling);
- the burst's p50/p95/max wait, from its arrival to its admitted moment (goal: with
  lending at most one shortest window more than without).

Numbers, not asserts; one process, so say how loaded the host was.

    python -m bench.lending
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import redis.asyncio as aioredis

from lanes import Budget, Lane, Limiter, Window, configure_logging
from scripts.local.services import RedisServer


async def _run(url: str, lend: bool, args: argparse.Namespace) -> tuple[float, list[float]]:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    window = (Window(limit=args.limit, seconds=1.0),)
    budget = Budget(f"bench:lend{int(lend)}", window, margin_ms=25.0, lend_idle=lend)
    limiter = Limiter(client, restart_guard=False)
    low_moments: list[float] = []
    stop = time.monotonic() + args.seconds
    try:
        await limiter.warm_up()

        async def low() -> None:
            while time.monotonic() < stop:
                ticket = await limiter.admit(budget, Lane.LOW)
                low_moments.append(ticket.at)

        async def high() -> float:
            arrived = time.monotonic()
            await limiter.admit(budget, Lane.HIGH)
            return time.monotonic() - arrived

        lows = [asyncio.create_task(low()) for _ in range(args.callers)]
        await asyncio.sleep(args.burst_at)
        start = min(low_moments)
        burst_moment = start + args.burst_at  # Redis time, about
        waits = await asyncio.gather(*(high() for _ in range(args.burst)))
        await asyncio.gather(*lows)
    finally:
        await limiter.aclose()
        await client.aclose()
    # Low alone: from one window after its first moment to the burst.
    begin, end = start + 1.0, burst_moment - 0.05
    served = sum(1 for at in low_moments if begin <= at < end) / (end - begin)
    return served / args.limit, list(waits)


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=50, help="requests per second")
    parser.add_argument("--callers", type=int, default=20, help="low-lane callers")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--burst-at", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=50, help="high requests at once")
    args = parser.parse_args()
    configure_logging("error")
    rows = []
    with RedisServer() as server:
        for lend in (False, True):
            share, waits = asyncio.run(_run(server.url, lend, args))
            rows.append((lend, share, waits))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"budget {args.limit}/s (1 s window, 25 ms margin), {args.callers} low callers, "
        f"a burst of {args.burst} high after {args.burst_at:.0f} s; "
        f"load average {load} on {os.cpu_count()} cores"
    )
    print("| lend_idle | low alone: served share of the limit | high burst wait p50 / p95 / max |")
    print("|---|---|---|")
    for lend, share, waits in rows:
        print(
            f"| {'on' if lend else 'off'} | {share:.3f} | {_quantile(waits, 0.5):.2f} s / "
            f"{_quantile(waits, 0.95):.2f} s / {max(waits):.2f} s |"
        )


if __name__ == "__main__":
    main()
