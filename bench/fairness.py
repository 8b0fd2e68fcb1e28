"""Benchmark: fairness between the sellers of one lane (docs/DESIGN.md rule 14).

One seller's backlog (`--noisy`, default 20,000 `call` jobs) sits in the medium
lane; `--workers` daemons (default 4, in this process) start on it, and then 200
quiet sellers' scheduled collection (5 jobs each) is enqueued behind it. The
market (in its own thread) allows `--rps` (default 40) and stamps each job's
arrival; a job's dwell is from its enqueue to its arrival at the market. Three
runs, one table:

- `fair`: the seller buffer on (`LANES_SELLER_BUFFER`, default 100);
- `fifo`: the same load with the buffer off (`LANES_SELLER_BUFFER=0`, the old way);
- `alone`: the quiet sellers without the noisy backlog (the goal: `fair`'s p95
  within 2x of this).

A run ends when every quiet job has arrived (the rest of the backlog is not
waited for). "twice" counts jobs that reached the market a second time.
Numbers, not asserts; the host is shared, so say how loaded it was.

    python -m bench.fairness                      # the issue's load: minutes per run
    python -m bench.fairness --noisy 2000         # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from aiohttp import web

from lanes import Lane, configure_logging
from markets.config import Config, parse_config
from scripts.local.moto_server import QuickMotoServer
from scripts.local.services import RedisServer, free_port
from scripts.tools.provision import provision
from scripts.tools.sending import Progress, group_id, send_stream
from worker.daemon import build_dispatcher
from worker.envelope import Envelope
from worker.queues import QueueName
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.sqs import OutgoingMessage, SqsClient

RUNS = ("fair", "fifo", "alone")


@dataclass
class Market:
    """Keeps each job's dwell (arrival minus the enqueue stamp the job carries), by job key;
    answers 200 at once."""

    port: int = field(default_factory=free_port)
    dwell: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)  # set before they are sent
    twice: int = 0  # calls for a job that had arrived already (run twice)
    all_arrived: threading.Event = field(default_factory=threading.Event)

    async def _call(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        dwell = time.time() - float(request.query.get("sent", "0"))
        if key not in self.dwell:
            self.dwell[key] = dwell
            self.order.append(key)
            self.waiting.discard(key)
            if not self.waiting:
                self.all_arrived.set()
        else:
            self.twice += 1
            print(f"twice: {key}, {self.dwell[key]:.1f} s and {dwell:.1f} s after its enqueue")
        return web.json_response({"ok": True})

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_get("/orders", self._call)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, name="market", daemon=True).start()
        ready.wait(10)


def _config(market: Market, rps: int) -> Config:
    endpoint = {"method": "GET", "path": "/orders", "rps": rps}
    raw = {
        "markets": {
            "acme": {
                "base_url": f"http://127.0.0.1:{market.port}",
                "endpoints": {"orders": endpoint},
            }
        }
    }
    return parse_config(raw, "bench config")


def _jobs(sellers: list[str], count: int) -> Iterator[OutgoingMessage]:
    """Each seller's jobs, stamped as they are made: just before their batch is sent."""
    for seller in sellers:
        for n in range(count):
            params = {"key": f"{seller}/{n}", "sent": f"{time.time():.3f}"}
            payload = {"endpoint": "orders", "params": params}
            body = Envelope(kind="call", market="acme", seller=seller, payload=payload).body()
            yield OutgoingMessage(body=body, group_id=group_id(seller))


async def _send(sqs: SqsClient, url: str, sellers: list[str], count: int, what: str) -> None:
    with Progress(len(sellers) * count, what=what) as progress:
        await send_stream(sqs, url, _jobs(sellers, count), progress)


@dataclass
class Result:
    run: str
    dwell: list[float]
    noisy_before: int  # backlog jobs that reached the market before the last quiet one
    set_aside: int
    seconds: float
    twice: int


async def _run(run: str, args: argparse.Namespace, redis_url: str, moto_url: str) -> Result:
    redis.Redis.from_url(redis_url).flushall()  # our own Redis: no budget state across runs
    market = Market()
    market.start()
    config = _config(market, args.rps)
    prefix = f"f{uuid.uuid4().hex[:8]}"
    temp = Path(tempfile.mkdtemp(prefix="lanes-fairness-"))
    settings = WorkerSettings(
        config=temp / "lanes.toml",
        redis_url=redis_url,
        sqs_endpoint_url=moto_url,
        queue_prefix=prefix,
        wait_seconds=2,
        concurrency=args.concurrency,
        seller_buffer=0 if run == "fifo" else args.buffer,
        results_url=f"file:{temp / 'results.jsonl'}",
    )
    async with SqsClient(endpoint_url=moto_url, region="us-east-1") as sqs:
        await provision(
            sqs, prefix=prefix, markets=["acme"], visibility_timeout=settings.visibility_timeout
        )
        url = await sqs.queue_url(QueueName(prefix, "acme", Lane.MEDIUM).queue)
        if run != "alone":
            await _send(sqs, url, ["noisy"], args.noisy, f"{run}: backlog")
        runtimes = [await Runtime(settings, config).open() for _ in range(args.workers)]
        dispatchers = [await build_dispatcher(runtime) for runtime in runtimes]
        tasks = [asyncio.create_task(d.run()) for d in dispatchers]
        started = time.monotonic()
        quiet = [f"q{s}" for s in range(args.sellers)]
        quiet_keys = {f"{seller}/{n}" for seller in quiet for n in range(args.jobs)}
        market.waiting = set(quiet_keys)
        await _send(sqs, url, quiet, args.jobs, f"{run}: scheduled collection")
        await asyncio.to_thread(market.all_arrived.wait, args.timeout)
        seconds = time.monotonic() - started
        missing = sorted(market.waiting)
        if missing:
            dead_url = await sqs.queue_url(QueueName(prefix, "acme", Lane.MEDIUM).dead_letter)
            dead, depth = await sqs.attributes(dead_url), await sqs.attributes(url)
            held = [len(s.buffer) for d in dispatchers for s in d.sources]
            held += [d.running for d in dispatchers]
            print(
                f"{run}: {len(missing)} quiet jobs did not arrive ({', '.join(missing[:10])}); "
                f"queue: {depth.get('ApproximateNumberOfMessages')} visible, "
                f"{depth.get('ApproximateNumberOfMessagesNotVisible')} in flight; "
                f"{dead.get('ApproximateNumberOfMessages')} dead letters; workers hold {sum(held)}"
            )
        for dispatcher in dispatchers:
            dispatcher.stop()
        await asyncio.gather(*tasks)
        for runtime in runtimes:
            await runtime.aclose()
    order = list(market.order)
    last_quiet = max((n for n, key in enumerate(order) if key in quiet_keys), default=0)
    return Result(
        run=run,
        dwell=[market.dwell[key] for key in quiet_keys if key in market.dwell],
        noisy_before=sum(1 for key in order[:last_quiet] if key.startswith("noisy/")),
        set_aside=sum(s.buffer.set_aside for d in dispatchers for s in d.sources),
        seconds=seconds,
        twice=market.twice,
    )


def _quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _table(results: list[Result], expected: int) -> str:
    rows = [
        (
            "run",
            "quiet done",
            "p50 s",
            "p95 s",
            "max s",
            "backlog before",
            "set aside",
            "twice",
            "run s",
        )
    ]
    for r in results:
        rows.append(
            (
                r.run,
                f"{len(r.dwell)}/{expected}",
                f"{_quantile(r.dwell, 0.5):.1f}",
                f"{_quantile(r.dwell, 0.95):.1f}",
                f"{max(r.dwell, default=float('nan')):.1f}",
                str(r.noisy_before),
                str(r.set_aside),
                str(r.twice),
                f"{r.seconds:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noisy", type=int, default=20_000, help="the backlog's jobs")
    parser.add_argument("--sellers", type=int, default=200, help="quiet sellers")
    parser.add_argument("--jobs", type=int, default=5, help="jobs per quiet seller")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    parser.add_argument("--buffer", type=int, default=100, help="LANES_SELLER_BUFFER (fair)")
    parser.add_argument("--rps", type=int, default=40, help="the market's limit")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per run at most")
    parser.add_argument("--log-level", default="error", help="the workers' log level")
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated: " + ",".join(RUNS))
    args = parser.parse_args()
    configure_logging(args.log_level)
    # moto's SQS takes any credentials; never reach a real AWS account from here.
    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "bench")):
        os.environ[name] = value
    os.environ["AWS_SECRET_ACCESS_KEY"] = "bench"
    results = []
    with RedisServer() as redis_server, QuickMotoServer() as moto:
        for run in args.runs.split(","):
            results.append(asyncio.run(_run(run, args, redis_server.url, moto.url)))
            print(_table(results[-1:], args.sellers * args.jobs), flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.sellers} quiet sellers x {args.jobs} jobs behind {args.noisy} of one seller, "
        f"{args.workers} workers x {args.concurrency}, market {args.rps}/s, "
        f"load average {load} on {os.cpu_count()} cores"
    )
    print(_table(results, args.sellers * args.jobs))


if __name__ == "__main__":
    main()
