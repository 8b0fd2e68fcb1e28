"""Redis work per job in the worker, besides the budget (issue 24).

Drains a backlog of jobs (a third per lane; low counts its attempts) through one
in-process worker (`Runtime` and the daemon's dispatcher) against a generous limit,
with a real redis-server, moto's SQS server and a market that answers at once, and
prints the Redis commands per job the worker sent besides the budget's, by command,
with the round trips they took. A command is what the client sends (a script call is
one, a transaction's MULTI and EXEC are one each), counted in the client, no MONITOR:
a round trip touching a job's record (`lanes:job:`), attempt count (`lanes:attempts:`),
kept result (`lanes:result:`), claim (`lanes:idem:`) or the aggregates its records keep
(seller index `lanes:seller-jobs:`, waiting sets `lanes:waiting:`, outcome counts
`lanes:outcomes:`) is the job's, all of its commands; every other one is the budget's
(admission, lateness, cooldown watch). The server's own count (INFO
commandstats, commands inside scripts included) is printed beside it.

    python -m bench.worker_redis               # 3,000 jobs
    python -m bench.worker_redis --jobs 600
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.client import Pipeline

from lanes.logs import configure_logging
from lanes.policy import Lane
from markets.config import parse_config
from scripts.local.moto_server import QuickMotoServer
from scripts.local.services import RedisServer, free_port
from worker.daemon import build_dispatcher
from worker.envelope import Envelope
from worker.queues import QueueName
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.sqs import OutgoingMessage, SqsClient

__all__ = ["Count", "main", "run"]

_JOB_KEYS = (
    "lanes:job:",
    "lanes:attempts:",
    "lanes:result:",
    "lanes:idem:",
    "lanes:seller-jobs:",
    "lanes:waiting:",
    "lanes:outcomes:",
)
_SCRIPT_CALLS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO"})


def _key_of(args: tuple[Any, ...]) -> str:
    name = str(args[0]).upper()
    if name in _SCRIPT_CALLS:
        return str(args[3]) if len(args) > 3 and int(args[2]) > 0 else ""
    return str(args[1]) if len(args) > 1 else ""


@dataclass
class Count:
    """Commands and round trips the client sent, the job's and the budget's apart."""

    job: Counter[str] = field(default_factory=Counter)
    budget: Counter[str] = field(default_factory=Counter)
    job_trips: int = 0
    budget_trips: int = 0

    def trip(self, commands: list[tuple[Any, ...]], *, transaction: bool) -> None:
        ours = any(_key_of(args).startswith(_JOB_KEYS) for args in commands)
        counter = self.job if ours else self.budget
        for args in commands:
            counter[str(args[0]).upper()] += 1
        if transaction:
            counter["MULTI"] += 1
            counter["EXEC"] += 1
        if ours:
            self.job_trips += 1
        else:
            self.budget_trips += 1


@contextmanager
def counting(count: Count) -> Iterator[None]:
    """Count every command redis-py's asyncio client sends, until the block ends."""
    plain = aioredis.Redis.execute_command
    pipelined = Pipeline.execute

    async def execute_command(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        count.trip([args], transaction=False)
        return await plain(self, *args, **options)  # type: ignore[no-untyped-call]

    async def execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        stack = [args for args, _options in self.command_stack]
        if stack:
            count.trip(stack, transaction=self.is_transaction)
        return await pipelined(self, raise_on_error)

    aioredis.Redis.execute_command = execute_command  # type: ignore[method-assign]
    Pipeline.execute = execute  # type: ignore[method-assign]
    try:
        yield
    finally:
        aioredis.Redis.execute_command = plain  # type: ignore[method-assign]
        Pipeline.execute = pipelined  # type: ignore[method-assign]


async def _market(port: int) -> web.AppRunner:
    async def answer(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/orders", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _server_calls(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
        return sum(int(entry["calls"]) for entry in stats.values())
    finally:
        await client.aclose()


async def run(jobs: int, redis_url: str, sqs_url: str, workdir: Path) -> tuple[Count, int, float]:
    """Drain `jobs` jobs; the client's count, the server's command delta, the seconds."""
    port = free_port()
    market = await _market(port)
    prefix = f"b{uuid.uuid4().hex[:8]}"
    raw = {
        "markets": {
            "bench": {
                "base_url": f"http://127.0.0.1:{port}",
                "endpoints": {"orders": {"method": "GET", "path": "/orders", "rps": 100_000}},
            }
        }
    }
    config = parse_config(raw, "bench config")
    results = workdir / "results.jsonl"
    settings = WorkerSettings(
        redis_url=redis_url,
        sqs_endpoint_url=sqs_url,
        queue_prefix=prefix,
        concurrency=64,
        visibility_timeout=60,
        wait_seconds=1,
        results_url=f"file:{results}",
    )
    async with SqsClient(endpoint_url=sqs_url) as sqs:
        for lane in Lane:
            name = QueueName(prefix, "bench", lane)
            url = await sqs.create_queue(name.queue, {"VisibilityTimeout": "60"})
            await sqs.create_queue(name.dead_letter, {})
            bodies = [
                Envelope(
                    kind="call",
                    market="bench",
                    seller="s-1",
                    payload={"endpoint": "orders", "params": {"n": n}},
                ).body()
                for n in range(jobs // 3)
            ]
            await sqs.send_batch(url, [OutgoingMessage(body=body) for body in bodies])
    total = jobs // 3 * 3
    count = Count()
    before = await _server_calls(redis_url)
    started = time.monotonic()
    with counting(count):
        runtime = await Runtime(settings, config).open()
        try:
            dispatcher = await build_dispatcher(runtime)
            task = asyncio.create_task(dispatcher.run())
            while True:  # the file sink's lines are the jobs done
                if results.exists() and len(results.read_text().splitlines()) >= total:
                    break
                await asyncio.sleep(0.2)
            seconds = time.monotonic() - started
            dispatcher.stop()
            await task
        finally:
            await runtime.aclose()
    server = await _server_calls(redis_url) - before
    await market.cleanup()
    return count, server, seconds


def _report(count: Count, server: int, seconds: float, jobs: int) -> None:
    job = sum(count.job.values())
    budget = sum(count.budget.values())
    print(f"jobs drained: {jobs} in {seconds:.1f} s (a third per lane)")
    print(
        f"Redis commands per job besides the budget: {job / jobs:.2f} "
        f"in {count.job_trips / jobs:.2f} round trips"
    )
    for name, calls in count.job.most_common():
        print(f"  {name:<10} {calls / jobs:.2f}")
    trips = count.budget_trips / jobs
    print(f"the budget's commands per job: {budget / jobs:.2f} in {trips:.2f} round trips")
    print(f"server-side commands per job (INFO commandstats, in scripts too): {server / jobs:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    args = parser.parse_args()
    configure_logging("warning")
    # moto's server only: nothing here reaches AWS.
    for name, value in (
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
    ):
        os.environ.setdefault(name, value)
    redis_server = RedisServer()
    moto = QuickMotoServer()
    redis_server.start()
    moto.start()
    try:
        with tempfile.TemporaryDirectory(prefix="lanes-bench-") as workdir:
            count, server, seconds = asyncio.run(
                run(args.jobs, redis_server.url, moto.url, Path(workdir))
            )
        _report(count, server, seconds, args.jobs // 3 * 3)
    finally:
        moto.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
