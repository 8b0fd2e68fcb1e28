"""The fault and load suite: several `lanes worker` processes, one fault injected mid-run.

Each run starts N worker processes through the CLI (`lanes worker`) against a
real redis-server, moto's SQS server and a strict counting market
(`bench.strict_market` in its own process), sends a mix of side-effect jobs
(high: POST with an id), collections (medium) and low work (half product syncs
that POST, half backfill reads), injects a
fault once a quarter of the jobs is done, heals it, waits for the lanes to
drain and counts what lanes promises (docs/DESIGN.md rules 1, 6, 8, 11, 12):

| column    | what                                                          | promised |
|-----------|---------------------------------------------------------------|----------|
| over      | arrivals over the market's limit in a trailing window          | 0        |
| lost      | jobs neither done, nor dead-lettered, nor back in their queue  | 0        |
| twice     | side effects the market performed more than once for an id     | 0        |
| no-reason | dead letters without a `lanes.reason` attribute                | 0        |
| leaks     | log lines or DLQ attributes holding a credential of the run    | 0        |
| recovery  | seconds from the heal to the first job done after it           | small    |

Workers reach Redis and SQS through `Gate`s (TCP proxies this process owns),
so the suite can cut or slow either without touching the servers' state.

    python -m bench.faults                      # every fault, 2 and 4 workers
    python -m bench.faults --workers 2 --fault sigkill --fault redis-down
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
from aiohttp import web

from bench.strict_market import strict_market_app
from scripts.moto_server import QuickMotoServer
from scripts.services import RedisServer, free_port

__all__ = [
    "FAULTS",
    "Fault",
    "Gate",
    "Rig",
    "Run",
    "RunReport",
    "drain_queue",
    "fault_market_app",
    "market_fault",
    "run_fault",
    "running_rig",
]

PASSWORD = "pw-" + uuid.uuid4().hex[:12]  # in the results URL: must never be logged
TOKEN = "tk-" + uuid.uuid4().hex[:12]
VISIBILITY = 10  # seconds: the lowest the settings accept, so a SIGKILL heals quickly

# -- the market process: strict counting + faults + side effects + a results sink ------------

_FAULT = web.AppKey("fault", dict[str, Any])
_EFFECTS = web.AppKey("effects", Counter[str])
_RESULTS = web.AppKey("results", dict[str, list[float]])


def fault_market_app(limit: int, seconds: float) -> web.Application:
    """`bench.strict_market` (every arrival under /call counted against one limit) plus:
    `POST /fault {"status", "sleep", "sink_status"}` sets how admitted calls and the results
    sink answer; a POST's JSON `key` counts one side effect performed (an admitted arrival
    the market did not fail); `POST /results` is a results sink; `GET /report` tells all."""
    app = strict_market_app(limit, seconds)
    app[_FAULT] = {}
    app[_EFFECTS] = Counter()
    app[_RESULTS] = {}

    @web.middleware
    async def faults(request: web.Request, handler: Any) -> web.StreamResponse:
        answer: web.StreamResponse = await handler(request)
        if not request.path.startswith("/call") or answer.status != 200:
            return answer  # refused over the limit (counted by the strict market)
        fault = request.app[_FAULT]
        if fault.get("status"):
            return web.json_response({"code": "FAULT"}, status=int(fault["status"]))
        if request.method == "POST":
            with contextlib.suppress(ValueError):
                body = await request.json()
                request.app[_EFFECTS][str(body.get("key"))] += 1
        if fault.get("sleep"):
            await asyncio.sleep(float(fault["sleep"]))
        return answer

    async def set_fault(request: web.Request) -> web.Response:
        request.app[_FAULT].clear()
        request.app[_FAULT].update(await request.json())
        return web.json_response(request.app[_FAULT])

    async def results(request: web.Request) -> web.Response:
        status = request.app[_FAULT].get("sink_status")
        if status:
            return web.json_response({"code": "SINK DOWN"}, status=int(status))
        record = await request.json()
        request.app[_RESULTS].setdefault(str(record.get("id")), []).append(time.time())
        return web.json_response({"ok": True})

    async def report(request: web.Request) -> web.Response:
        effects = request.app[_EFFECTS]
        return web.json_response(
            {
                "effects": sum(effects.values()),
                "twice": sorted(key for key, count in effects.items() if count > 1),
                "results": request.app[_RESULTS],
            }
        )

    app.middlewares.append(faults)
    app.router.add_post("/fault", set_fault)
    app.router.add_post("/results", results)
    app.router.add_get("/report", report)
    return app


# -- a TCP proxy that can be cut or slowed -----------------------------------------------------


class Gate:
    """A TCP proxy on a free loopback port to `127.0.0.1:target`, served from its own thread.

    `cut()` closes the listening socket and every connection (the endpoint is unreachable);
    `mend()` listens again; `delay` seconds are added to every chunk forwarded.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def cut(self) -> None:
        self._call(self._close())

    def mend(self) -> None:
        self._call(self._listen())

    def _call(self, work: Any) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


# -- the rig: servers, gates, workers ----------------------------------------------------------


def _http(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _toml(market_url: str, limit: int) -> str:
    return f"""
[lanes.low]
max_attempts = 3

[markets.acme]
base_url = "{market_url}"
timeout = 2.0

[markets.acme.options]
cooldown_seconds = "1"

[markets.acme.groups.api]
rps = {limit}

[markets.acme.endpoints.orders]
path = "/call/orders"
group = "api"

[markets.acme.endpoints.per_seller]
path = "/call/seller"
rps = 1
scope = "seller"

[markets.acme.endpoints.ship]
method = "POST"
path = "/call/ship"
group = "api"
"""


@dataclass
class Rig:
    """Redis, moto, the market and the two gates, for any number of runs (one prefix each)."""

    workdir: Path
    limit: int = 10
    redis: RedisServer = field(default_factory=RedisServer)
    moto: QuickMotoServer = field(default_factory=QuickMotoServer)
    market_port: int = field(default_factory=free_port)
    _market: subprocess.Popen[bytes] | None = None
    redis_gate: Gate | None = None
    sqs_gate: Gate | None = None

    @property
    def market_url(self) -> str:
        return f"http://127.0.0.1:{self.market_port}"

    def start(self) -> Rig:
        self.redis.start()
        self.moto.start()
        self._market = subprocess.Popen(
            [sys.executable, "-m", "bench.faults", "--serve-market", str(self.market_port),
             "--limit", str(self.limit)],
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                _http(f"{self.market_url}/stats")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.redis_gate, self.sqs_gate = Gate(self.redis.port), Gate(self.moto.port)
        self.redis_gate.start()
        self.sqs_gate.start()
        (self.workdir / "lanes.toml").write_text(_toml(self.market_url, self.limit))
        return self

    def stop(self) -> None:
        for gate in (self.redis_gate, self.sqs_gate):
            if gate is not None:
                gate.stop()
        if self._market is not None:
            self._market.terminate()
            self._market.wait(10)
        self.moto.stop()
        self.redis.stop()

    def sqs(self) -> Any:
        return boto3.client(
            "sqs",
            endpoint_url=self.moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def provision(self, prefix: str) -> tuple[dict[str, str], list[str]]:
        """`lanes provision` for market acme under `prefix`: the lane and dead-letter URLs."""
        subprocess.run(
            [sys.executable, "-m", "scripts.cli", "provision", "-m", "acme"],
            env={**self.env(prefix), "LANES_SQS_ENDPOINT_URL": self.moto.url},
            check=True,
            capture_output=True,
        )
        sqs = self.sqs()
        urls = {
            lane: sqs.get_queue_url(QueueName=f"{prefix}-acme-{lane}")["QueueUrl"]
            for lane in ("high", "medium", "low")
        }
        dead = [
            sqs.get_queue_url(QueueName=f"{prefix}-acme-{lane}-dlq")["QueueUrl"] for lane in urls
        ]
        return urls, dead

    def env(self, prefix: str, *, redis_gate: bool = False) -> dict[str, str]:
        """A worker's environment; Redis through its gate only when the fault needs it (the
        proxy adds jitter of its own), SQS always through its gate."""
        assert self.redis_gate is not None
        assert self.sqs_gate is not None
        redis_port = self.redis_gate.port if redis_gate else self.redis.port
        results = f"http://lanes:{PASSWORD}@127.0.0.1:{self.market_port}/results?token={TOKEN}"
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("LANES_")},
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "LANES_CONFIG": str(self.workdir / "lanes.toml"),
            "LANES_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "LANES_SQS_ENDPOINT_URL": f"http://127.0.0.1:{self.sqs_gate.port}",
            "LANES_QUEUE_PREFIX": prefix,
            "LANES_WAIT_SECONDS": "1",
            "LANES_VISIBILITY_TIMEOUT": str(VISIBILITY),
            "LANES_GRACE_SECONDS": "3",
            "LANES_CONCURRENCY": "8",
            # The market's slowest answer (the timeouts fault) takes 3 s.
            "LANES_SETTLE_SECONDS": "5",
            "LANES_RESULTS_URL": results,
        }


# -- one run -----------------------------------------------------------------------------------


# `lanes` with time.time() off by `skew` seconds (patched before anything reads it).
_SKEWED = (
    "import sys, time; real = time.time; time.time = lambda: real() + {skew}; "
    "from scripts.cli import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass
class Run:
    """One fault run's workers and queues; handed to the fault to act on."""

    rig: Rig
    prefix: str
    workers: int
    redis_gate: bool = False
    lambda_timeout: float | None = None
    logs: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, clock_skew: float = 0.0) -> subprocess.Popen[bytes]:
        """`lanes worker -m acme` in a new process; its wall clock `clock_skew` seconds off.
        With `lambda_timeout`, the Lambda handler behind the event-source emulator instead."""
        log = self.rig.workdir / f"{self.prefix}-worker-{len(self.logs)}.log"
        self.logs.append(log)
        command = [sys.executable, "-m", "scripts.cli", "worker", "-m", "acme"]
        if self.lambda_timeout is not None:
            output = str(log.with_suffix("")) + "-{pid}.log"
            command = [sys.executable, "-m", "bench.lambda_workers",
                       "--timeout", str(self.lambda_timeout), "--output", output]  # fmt: skip
        if clock_skew:
            command[1:3] = ["-c", _SKEWED.format(skew=clock_skew)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env=self.rig.env(self.prefix, redis_gate=self.redis_gate),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [process for process in self.processes if process.poll() is None]

    def stop_all(self, how: signal.Signals = signal.SIGTERM) -> None:
        for process in self.live():
            process.send_signal(how)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def fault(self, **fault: Any) -> None:
        _http(f"{self.rig.market_url}/fault", fault)


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Run], None]
    heal: Callable[[Run], None]
    seconds: float  # how long the fault lasts in the bench (tests shorten it)
    redis_gate: bool = False  # workers reach Redis through the gate
    lambda_timeout: float | None = None  # run Lambda handlers with this timeout, not daemons


def _nothing(run: Run) -> None:
    return None


def _sigkill(run: Run) -> None:
    run.fault(sleep=1.5)  # jobs are mid-call (mid-POST for high) when the kill comes
    time.sleep(1.0)
    run.live()[0].kill()
    run.spawn()  # the supervisor (ECS, systemd) starts a replacement


def _sigterm_burst(run: Run) -> None:
    run.stop_all(signal.SIGTERM)
    for _ in range(run.workers):
        run.spawn()


def _clocks_differ(run: Run) -> None:
    """Workers replaced by ones whose clocks are 30 s ahead and behind: time comes from
    Redis (docs/DESIGN.md rule 1), so the limit holds regardless."""
    run.stop_all(signal.SIGTERM)
    for number in range(run.workers):
        run.spawn(clock_skew=30.0 if number % 2 else -30.0)


def _redis_stop(run: Run) -> None:
    run.rig.redis.stop()


def _redis_start(run: Run) -> None:
    run.rig.redis.start()  # empty: no persistence


def _redis_restart_empty(run: Run) -> None:
    _redis_stop(run)
    _redis_start(run)


def _slow(gate: str, seconds: float) -> Callable[[Run], None]:
    def act(run: Run) -> None:
        target: Gate | None = getattr(run.rig, gate)
        assert target is not None
        target.delay = seconds

    return act


def _cut_sqs(run: Run) -> None:
    assert run.rig.sqs_gate is not None
    run.rig.sqs_gate.cut()


def _mend_sqs(run: Run) -> None:
    assert run.rig.sqs_gate is not None
    run.rig.sqs_gate.mend()


def market_fault(**fault: Any) -> Callable[[Run], None]:
    """Set the market's fault (`status`, `sleep`, `sink_status`); no argument heals it."""

    def act(run: Run) -> None:
        run.fault(**fault)

    return act


FAULTS = {
    fault.name: fault
    for fault in (
        Fault("none", _nothing, _nothing, 0),
        Fault("sigkill", _sigkill, market_fault(), 0),
        Fault("sigterm-burst", _sigterm_burst, _nothing, 0),
        Fault("clocks-differ", _clocks_differ, _nothing, 0),
        Fault("redis-down", _redis_stop, _redis_start, 45),
        Fault("redis-restart-empty", _redis_restart_empty, _nothing, 0),
        Fault("redis-slow", _slow("redis_gate", 0.5), _slow("redis_gate", 0.0), 15, True),
        Fault("429-storm", market_fault(status=429), market_fault(), 15),
        Fault("5xx-storm", market_fault(status=503), market_fault(), 15),
        Fault("slow-answers", market_fault(sleep=1.5), market_fault(), 15),
        Fault("timeouts", market_fault(sleep=3.0), market_fault(), 15),
        Fault("sqs-unreachable", _cut_sqs, _mend_sqs, 15),
        Fault("sink-down", market_fault(sink_status=503), market_fault(), 15),
        # Slow answers against a 3 s function timeout: invocations run out of time.
        Fault(
            "lambda-out-of-time", market_fault(sleep=1.5), market_fault(), 15, lambda_timeout=3.0
        ),
    )
}


@dataclass
class RunReport:
    fault: str
    workers: int
    jobs: int
    done: int
    dead: int
    over: int
    lost: int
    twice: int
    no_reason: int
    leaks: int
    recovery: float | None
    drained: float | None
    # The string attributes of each dead letter (lanes.reason, lanes.error, ...).
    dead_letters: list[dict[str, str]] = field(default_factory=list)

    @property
    def reasons(self) -> Counter[str]:
        return Counter(attributes.get("lanes.reason", "-")[:60] for attributes in self.dead_letters)

    def row(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        return [
            self.fault, str(self.workers), str(self.jobs), str(self.done), str(self.dead),
            str(self.over), str(self.lost), str(self.twice), str(self.no_reason),
            str(self.leaks), seconds(self.recovery), seconds(self.drained),
        ]  # fmt: skip

    @property
    def kept_promises(self) -> bool:
        return self.over == self.lost == self.twice == self.no_reason == self.leaks == 0


HEADER = [
    "fault", "workers", "jobs", "done", "dead", "over", "lost", "twice", "no-reason",
    "leaks", "recovery s", "drained s",
]  # fmt: skip


def _jobs(prefix: str, high: int, medium: int, low: int) -> dict[str, list[tuple[str, str]]]:
    """(id, body) per lane; a side effect is a POST whose JSON `key` is the job's id.
    Ids carry the run's prefix: the market's counts are per id across runs."""

    def body(job_id: str, endpoint: str, extra: dict[str, Any]) -> str:
        payload = {"endpoint": endpoint, **extra}
        return json.dumps(
            {"kind": "call", "market": "acme", "seller": "s-1", "payload": payload, "id": job_id}
        )

    def lane(letter: str, count: int, side_effects: int) -> list[tuple[str, str]]:
        """`count` jobs, every `side_effects`-th one a POST (0: none)."""
        made = []
        for n in range(count):
            job_id = f"{prefix}-{letter}{n}"
            if side_effects and n % side_effects == 0:
                made.append((job_id, body(job_id, "ship", {"json": {"key": job_id}})))
            else:
                made.append((job_id, body(job_id, "orders", {})))
        return made

    # High ships; medium collects; low is half product syncs (POST), half backfill reads.
    return {"high": lane("h", high, 1), "medium": lane("m", medium, 0), "low": lane("l", low, 2)}


def drain_queue(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message now in `url` (hidden for 10 minutes while counted)."""
    taken: list[dict[str, Any]] = []
    empty = 0
    while empty < 2:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=600,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        empty = 0 if got else empty + 1
        taken.extend(got)
    return taken


def _leaks(run: Run, dead: list[dict[str, Any]]) -> int:
    # Every log of the run: the workers', and those of Lambda worker processes.
    logs = run.rig.workdir.glob(f"{run.prefix}-worker-*.log")
    texts = [log.read_text(errors="replace") for log in logs]
    texts += [json.dumps(message.get("MessageAttributes", {})) for message in dead]
    return sum(text.count(PASSWORD) + text.count(TOKEN) for text in texts)


def run_fault(
    rig: Rig,
    fault: Fault,
    *,
    workers: int = 2,
    seconds: float | None = None,
    jobs: tuple[int, int, int] = (30, 60, 60),
    drain_timeout: float = 150.0,
) -> RunReport:
    """One run: send the jobs, start `workers`, inject `fault` at a quarter done, heal it after
    `seconds` (default: the fault's own), wait for the drain, count."""
    prefix = f"f{uuid.uuid4().hex[:8]}"
    run = Run(
        rig, prefix, workers, redis_gate=fault.redis_gate, lambda_timeout=fault.lambda_timeout
    )
    _http(f"{rig.market_url}/fault", {})
    sqs = rig.sqs()
    urls, dead_urls = rig.provision(prefix)
    bodies = _jobs(prefix, *jobs)
    ids = {job_id for lane in bodies.values() for job_id, _ in lane}
    for lane, lane_jobs in bodies.items():
        for start in range(0, len(lane_jobs), 10):
            entries = [
                {"Id": job_id, "MessageBody": body}
                for job_id, body in lane_jobs[start : start + 10]
            ]
            sqs.send_message_batch(QueueUrl=urls[lane], Entries=entries)
    before = _http(f"{rig.market_url}/stats")
    dead: dict[str, dict[str, Any]] = {}

    def done_ids() -> dict[str, list[float]]:
        results: dict[str, list[float]] = _http(f"{rig.market_url}/report")["results"]
        return {job_id: times for job_id, times in results.items() if job_id in ids}

    def collect_dead() -> None:
        for url in dead_urls:
            for message in drain_queue(sqs, url):
                dead.setdefault(json.loads(message["Body"]).get("id", "?"), message)

    drained = None
    try:
        for _ in range(workers):
            run.spawn()
        started = time.monotonic()
        while len(done_ids()) < len(ids) // 4 and time.monotonic() - started < 60:
            time.sleep(0.2)
        fault.inject(run)
        time.sleep(fault.seconds if seconds is None else seconds)
        fault.heal(run)
        healed_at, healed_wall = time.monotonic(), time.time()
        while time.monotonic() - healed_at < drain_timeout:
            collect_dead()
            if len(set(done_ids()) | set(dead)) >= len(ids):
                drained = time.monotonic() - healed_at
                break
            time.sleep(1.0)
    finally:
        run.stop_all(signal.SIGTERM)
    collect_dead()
    done = done_ids()
    after = _http(f"{rig.market_url}/stats")
    queued: set[str] = set()
    if set(done) | set(dead) < ids:
        # Whatever is still queued is not lost: visible now, or once its visibility times out.
        time.sleep(VISIBILITY + 1)
        queued = {
            json.loads(message["Body"]).get("id")
            for url in urls.values()
            for message in drain_queue(sqs, url)
        }
    firsts = [min(times) for times in done.values() if max(times) >= healed_wall]
    after_heal = [moment - healed_wall for moment in firsts if moment >= healed_wall]
    dead_messages = list(dead.values())
    return RunReport(
        fault=fault.name,
        workers=workers,
        jobs=len(ids),
        done=len(set(done) & ids),
        dead=len(set(dead) & ids),
        over=after["refused"] - before["refused"],
        lost=len(ids - set(done) - set(dead) - queued),
        twice=len(set(_http(f"{rig.market_url}/report")["twice"]) & ids),
        no_reason=sum(
            1
            for message in dead_messages
            if "lanes.reason" not in message.get("MessageAttributes", {})
        ),
        leaks=_leaks(run, dead_messages),
        recovery=min(after_heal) if after_heal else None,
        drained=drained,
        dead_letters=[
            {name: value.get("StringValue", "") for name, value in attributes.items()}
            for attributes in (message.get("MessageAttributes", {}) for message in dead_messages)
        ],
    )


@contextlib.contextmanager
def running_rig(limit: int = 10) -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="lanes-faults-") as directory:
        rig = Rig(Path(directory), limit=limit)
        try:
            yield rig.start()
        finally:
            rig.stop()


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in [HEADER, *rows]]  # fmt: skip
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, action="append", help="default: 2 and 4")
    parser.add_argument("--fault", action="append", choices=sorted(FAULTS), help="default: all")
    parser.add_argument("--seconds", type=float, help="every fault's length (default: its own)")
    parser.add_argument("--limit", type=int, default=10, help="the market's requests/s")
    parser.add_argument("--serve-market", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_market:
        web.run_app(
            fault_market_app(args.limit, 1.0),
            host="127.0.0.1",
            port=args.serve_market,
            print=None,
            access_log=None,
        )
        return
    rows = []
    with running_rig(args.limit) as rig:
        for workers in args.workers or [2, 4]:
            for name in args.fault or list(FAULTS):
                report = run_fault(rig, FAULTS[name], workers=workers, seconds=args.seconds)
                rows.append(report.row())
                print(" | ".join(report.row()), dict(report.reasons), file=sys.stderr, flush=True)
    print(
        f"market limit {args.limit}/s; jobs: 30 high (POST: side effects), 60 medium (GET), "
        "60 low (half POST, half GET)"
    )
    print(_table(rows))


if __name__ == "__main__":
    main()
