"""`lanes demo`: the whole system on one machine, with no AWS account and no Redis.

Plays the burst of `scripts.demo.load` twice against the simulators of the markets
that have a part in it (`markets/<name>/demo.py`), each time with a fresh Redis and
fresh simulators, on one moto SQS server, all child processes this command starts and
stops:

1. with lanes: three lane queues per market, `--workers` worker processes
   (`lanes worker`, or with `--mode lambda` the handler behind the local event
   source emulator) sharing each market's budget in Redis;
2. without lanes: every message in one queue per market, the same limit.

While it runs, a live table shows requests per second by lane at each market
against the lane's ceiling and the limit; at the end, a summary per market and
lane beside the run without lanes, and a PNG chart in the working directory.
Exit 0 when no market answered 429, no message was lost or dead-lettered, every high
message was done and the lane ceilings held (docs/DESIGN.md rules 1, 2 and 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, TextIO

import aiohttp

from lanes.policy import Lane
from scripts.demo.chart import write_chart
from scripts.demo.load import (
    LOADS,
    MARKET_RATES,
    MARKETS,
    Planned,
    config_text,
    plan_burst,
)
from scripts.demo.measure import RunTally
from scripts.demo.sim import ARRIVALS_PATH
from scripts.demo.view import LiveView, render_summary
from scripts.local.lambda_emulator import EventSource, LambdaEmulator
from scripts.local.moto_server import QuickMotoServer
from scripts.local.services import RedisServer, SimulatorServer, credential_variables
from scripts.tools.provision import provision
from worker.queues import QueueName
from worker.sqs import OutgoingMessage, SqsClient

__all__ = ["DemoOptions", "run_demo"]

Mode = Literal["daemon", "lambda"]
_VISIBILITY = 180  # >= 6x the emulated function's timeout
_FUNCTION_TIMEOUT = 30.0
_WORKER_CONCURRENCY = 16
_GRACE = 5
_TICK = 0.5
# Workers run at a lower CPU priority than the simulators: a simulator stands for a market
# on its own machine, and a starved one would stamp requests late, in bunches.
_WORKER_NICENESS = 10
_AWS = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class DemoOptions:
    duration: float = 30.0
    sellers: int = 100
    workers: int = 3
    mode: Mode = "daemon"
    compare: bool = True  # also play the burst without lanes
    board_port: int | None = None  # serve `lanes api` (and its board) beside the lanes run

    @property
    def chart_name(self) -> str:
        return "lanes-demo.png" if self.mode == "daemon" else "lanes-demo-lambda.png"


@dataclass(frozen=True)
class _Services:
    redis_url: str
    sqs_url: str
    simulators: Mapping[str, str]  # market -> root URL
    config: Path


def _environment(services: _Services, prefix: str, results: str) -> dict[str, str]:
    """The worker's settings, as `LANES_*` variables."""
    values = {
        "LANES_CONFIG": str(services.config),
        "LANES_REDIS_URL": services.redis_url,
        "LANES_SQS_ENDPOINT_URL": services.sqs_url,
        "LANES_QUEUE_PREFIX": prefix,
        "LANES_RESULTS_URL": f"file:{results}",
        "LANES_LOG_LEVEL": "error",
        "LANES_WAIT_SECONDS": "1",
        "LANES_GRACE_SECONDS": str(_GRACE),
        "LANES_VISIBILITY_TIMEOUT": str(_VISIBILITY),
        "LANES_CONCURRENCY": str(_WORKER_CONCURRENCY),
        **_AWS,
        **credential_variables(MARKETS),
    }
    return values


class _Results:
    """Reads the workers' results files as they grow: job id -> moment it was done."""

    def __init__(self, folder: Path, pattern: str) -> None:
        self._folder = folder
        self._pattern = pattern
        self._offsets: dict[Path, int] = {}

    def read(self, done: dict[str, float]) -> None:
        for path in self._folder.glob(self._pattern):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[path] = offset + len(complete)
            for line in complete.splitlines():
                record = json.loads(line)
                finished = datetime.fromisoformat(record["finished_at"]).timestamp()
                done.setdefault(str(record["id"]), finished)


@contextlib.asynccontextmanager
async def _daemon_workers(
    count: int, environment: Mapping[str, str], logs: Path
) -> AsyncIterator[None]:
    """`count` `lanes worker` processes; SIGTERM at the end (they release what they hold)."""
    processes: list[asyncio.subprocess.Process] = []
    try:
        for index in range(count):
            with (logs / f"worker-{index}.log").open("wb") as log:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "scripts.cli", "worker",
                        env={**os.environ, **environment, "LANES_RESULTS_URL":
                             environment["LANES_RESULTS_URL"].replace("{pid}", str(index))},
                        stdout=log, stderr=log, start_new_session=True,
                        preexec_fn=lambda: os.nice(_WORKER_NICENESS),
                    )
                )  # fmt: skip
        yield
        for process in processes:
            if process.returncode is not None:
                raise RuntimeError(f"a worker exited early with {process.returncode}")
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), _GRACE + 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def _lambda_workers(
    options: DemoOptions,
    sqs: SqsClient,
    prefix: str,
    environment: Mapping[str, str],
    fifo: bool,
    logs: Path,
) -> AsyncIterator[None]:
    """The handler behind one emulated event source per lane queue."""
    per_lane = max(1, round(options.workers / len(Lane)))
    sources = [
        EventSource(
            QueueName(prefix, market, lane).queue,
            batch_size=10,
            batching_window=0.0 if lane is Lane.HIGH else 0.5,
            max_concurrency=per_lane * (len(Lane) if fifo else 1),
        )
        for market in MARKETS
        for lane in ((Lane.HIGH,) if fifo else tuple(Lane))
    ]
    async with LambdaEmulator(
        sqs,
        sources,
        environment=environment,
        timeout_seconds=_FUNCTION_TIMEOUT,
        niceness=_WORKER_NICENESS,
        output=str(logs / f"{prefix}-lambda-{{pid}}.log"),
    ) as emulator:
        running = asyncio.create_task(emulator.run())
        try:
            yield
        finally:
            emulator.stop()
            await running


@contextlib.asynccontextmanager
async def _board(
    port: int | None, environment: Mapping[str, str], logs: Path, out: TextIO
) -> AsyncIterator[None]:
    """`lanes api` on `port` beside the run (none: nothing), its board's URL and key shown."""
    if port is None:
        yield
        return
    key = secrets.token_urlsafe(12)
    with (logs / "api.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scripts.cli", "api", "--port", str(port),
            env={**os.environ, **environment, "LANES_API_KEYS": key},
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    print(f"board: http://127.0.0.1:{port}/board (key {key}, for this run)", file=out)
    try:
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _produce(
    sqs: SqsClient, urls: Mapping[tuple[str, Lane], str], plan: list[Planned], tally: RunTally
) -> None:
    """Send each message at its moment (batches of what is due)."""
    tally.started = time.time()
    pending = list(plan)
    while pending:
        now = time.time() - tally.started
        due = [job for job in pending if job.at <= now]
        pending = pending[len(due) :]
        by_queue: dict[str, list[Planned]] = {}
        for job in due:
            by_queue.setdefault(urls[(job.market, job.lane)], []).append(job)
        for url, jobs in by_queue.items():
            await sqs.send_batch(url, [OutgoingMessage(body=job.body) for job in jobs])
            sent = time.time()
            tally.sent_at.update((job.id, sent) for job in jobs)
        if pending:
            await asyncio.sleep(max(0.0, min(0.2, pending[0].at - (time.time() - tally.started))))


async def _warm_up(
    sqs: SqsClient, urls: Mapping[tuple[str, Lane], str], results: _Results, workers: int
) -> None:
    """Start the clock once workers answer: a few cheap reads (routes no lane claims)."""
    today = datetime.now().date()
    ids = set()
    for market in MARKETS:
        seller, params = LOADS[market].warm_up(today)
        bodies = []
        for number in range(2 * workers):
            job_id = f"warm-up-{market}-{number}"
            ids.add(job_id)
            payload = {"endpoint": "inquiries", "params": params}
            body = {"kind": "call", "market": market, "seller": seller, "id": job_id}
            bodies.append(json.dumps({**body, "payload": payload}))
        await sqs.send_batch(urls[(market, Lane.HIGH)], [OutgoingMessage(body=b) for b in bodies])
    done: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while not ids <= done.keys():
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not start within 120 s")
        await asyncio.sleep(_TICK)
        results.read(done)


async def _arrivals(session: aiohttp.ClientSession, services: _Services, tally: RunTally) -> None:
    for market, root in services.simulators.items():
        after = len(tally.arrivals[market])
        async with session.get(f"{root}{ARRIVALS_PATH}", params={"after": str(after)}) as answer:
            tally.add_arrivals(market, await answer.json())


async def _take_all(sqs: SqsClient, url: str) -> list[tuple[str, str]]:
    """(job id, dead-letter reason) of every message left in a queue."""
    found: list[tuple[str, str]] = []
    while True:
        got = await sqs.receive(url, max_messages=10, wait_seconds=0, visibility_timeout=120)
        if not got:
            return found
        for message in got:
            try:
                job_id = str(json.loads(message.body).get("id"))
            except (ValueError, AttributeError):
                job_id = "?"
            found.append((job_id, message.message_attributes.get("lanes.reason", "")))


async def _settle_queues(sqs: SqsClient, prefix: str, tally: RunTally) -> None:
    """Where the messages not done are: visible in a lane queue (by id), invisible in one
    (a count: released with a backoff), or dead-lettered (by id, with the reason)."""
    for market in MARKETS:
        for lane in Lane:
            names = QueueName(prefix, market, lane)
            url = await sqs.queue_url(names.queue)
            taken = await _take_all(sqs, url)
            tally.left.update(job_id for job_id, _ in taken)
            counts = await sqs.attributes(
                url, ("ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed")
            )
            # less the ones _take_all itself just made invisible
            tally.hidden[(market, lane)] = max(0, sum(map(int, counts.values())) - len(taken))
            for job_id, reason in await _take_all(sqs, await sqs.queue_url(names.dead_letter)):
                tally.dead[job_id] = reason or "unknown"


async def _queued(sqs: SqsClient, urls: Mapping[tuple[str, Lane], str]) -> int:
    total = 0
    for url in set(urls.values()):
        attributes = await sqs.attributes(
            url, ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
        )
        total += sum(int(value) for value in attributes.values())
    return total


async def _play(
    name: str, prefix: str, options: DemoOptions, services: _Services, work: Path, out: TextIO
) -> RunTally:
    """One run of the burst; with `prefix` "fifo", every message goes to one queue per market."""
    fifo = name == "without lanes"
    tally = RunTally(name)
    plan = plan_burst(options.duration, options.sellers)
    tally.jobs = {job.id: job for job in plan}
    environment = _environment(services, prefix, str(work / f"{prefix}-results-{{pid}}.jsonl"))
    results = _Results(work, f"{prefix}-results-*.jsonl")
    async with SqsClient(endpoint_url=services.sqs_url, region="us-east-1") as sqs:
        await provision(
            sqs,
            prefix=prefix,
            markets=list(MARKETS),
            visibility_timeout=_VISIBILITY,
        )
        urls = {
            (market, lane): await sqs.queue_url(
                QueueName(prefix, market, Lane.HIGH if fifo else lane).queue
            )
            for market in MARKETS
            for lane in Lane
        }
        workers = (
            _daemon_workers(options.workers, environment, work)
            if options.mode == "daemon"
            else _lambda_workers(options, sqs, prefix, environment, fifo, work)
        )
        deadline = time.monotonic() + 3 * options.duration + 60
        board = _board(None if fifo else options.board_port, environment, work, out)
        async with aiohttp.ClientSession() as session, workers, board:
            await _warm_up(sqs, urls, results, options.workers)
            view = LiveView(tally, out)
            producer = asyncio.create_task(_produce(sqs, urls, plan, tally))
            view.start()
            try:
                while time.monotonic() < deadline:
                    await asyncio.sleep(_TICK)
                    await _arrivals(session, services, tally)
                    results.read(tally.done_at)
                    view.refresh()
                    if producer.done() and await _queued(sqs, urls) == 0:
                        break
                producer.result()
            finally:
                view.stop()
                producer.cancel()
        results.read(tally.done_at)
        async with aiohttp.ClientSession() as session:
            await _arrivals(session, services, tally)
        await _settle_queues(sqs, prefix, tally)
    return tally


def _run_once(
    name: str, prefix: str, options: DemoOptions, sqs_url: str, work: Path, out: TextIO
) -> RunTally:
    """Fresh Redis and simulators for one run (a shipped order stays shipped)."""
    simulators = {
        market: SimulatorServer(market, MARKET_RATES[market], module="scripts.demo.sim")
        for market in MARKETS
    }
    with RedisServer() as redis, contextlib.ExitStack() as started:
        for simulator in simulators.values():
            started.enter_context(simulator)
        config = work / f"{prefix}.toml"
        config.write_text(
            config_text({market: sim.base_url for market, sim in simulators.items()}),
            encoding="utf-8",
        )
        services = _Services(
            redis.url, sqs_url, {market: sim.root for market, sim in simulators.items()}, config
        )
        print(f"\n== {name}: {options.workers} worker(s), mode {options.mode}", file=out)
        return asyncio.run(_play(name, prefix, options, services, work, out))


def run_demo(options: DemoOptions | None = None, out: TextIO | None = None) -> int:
    """Run the demo; 0 when it showed what it must (see the module's docstring)."""
    options = options or DemoOptions()
    out = out or sys.stdout
    for key, value in _AWS.items():
        os.environ.setdefault(key, value)
    work = Path(tempfile.mkdtemp(prefix="lanes-demo-"))
    print(
        f"lanes demo: {options.duration:g} s burst, {options.sellers} sellers, "
        "budgets "
        + " and ".join(f"{load.limit:g}/s at {load.shown}" for load in LOADS.values())
        + "; starting moto, Redis and the simulators",
        file=out,
    )
    try:
        with QuickMotoServer() as moto:
            runs = [_run_once("with lanes", "demo", options, moto.url, work, out)]
            if options.compare:
                runs.append(_run_once("without lanes", "fifo", options, moto.url, work, out))
        chart = Path.cwd() / options.chart_name
        write_chart(chart, runs)
        ok = render_summary(runs, out)
        print(f"\nchart: {chart}", file=out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1
