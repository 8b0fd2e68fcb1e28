"""The fault suite's rig: Redis, moto, the market and the gates for any number of runs, and
one run's worker processes (`lanes worker` through the CLI, or the Lambda handler)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]

from bench.faults.gate import Gate
from scripts.local.moto_server import QuickMotoServer
from scripts.local.services import RedisServer, free_port

__all__ = [
    "PASSWORD",
    "TOKEN",
    "VISIBILITY",
    "Rig",
    "Run",
    "drain_queue",
    "http_json",
    "running_rig",
]

PASSWORD = "pw-" + uuid.uuid4().hex[:12]  # in the results URL: must never be logged
TOKEN = "tk-" + uuid.uuid4().hex[:12]
VISIBILITY = 10  # seconds: the lowest the settings accept, so a SIGKILL heals quickly


def http_json(url: str, body: Any = None) -> Any:
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
                http_json(f"{self.market_url}/stats")
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
    env: dict[str, str] = field(default_factory=dict)  # over the rig's (e.g. the soak's slots)
    queues: dict[str, str] = field(default_factory=dict)  # lane: URL, once provisioned
    bodies: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # lane: (id, body)
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
                env={**self.rig.env(self.prefix, redis_gate=self.redis_gate), **self.env},
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
        http_json(f"{self.rig.market_url}/fault", fault)


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


@contextlib.contextmanager
def running_rig(limit: int = 10) -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="lanes-faults-") as directory:
        rig = Rig(Path(directory), limit=limit)
        try:
            yield rig.start()
        finally:
            rig.stop()
