"""`lanes demo`: the whole system on one machine, with no AWS account and no Redis.

Starts its own Redis, moto's SQS server and the Coupang and Naver simulators
(each a child process on a free port), provisions the queues, enqueues a
mixed load in every lane (a low-lane backfill burst, scheduled collection in
medium, shipping and inquiry answers in high, one malformed message), runs
the worker in this process until the lanes are drained, and prints a summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import markets
from lanes.config import Config
from lanes.logs import configure_logging
from lanes.policy import Lane
from lanes.settings import Settings, load_settings
from markets.simulators import DEFAULT_APPS, DEFAULT_KEYS
from scripts.backfill import producer_id, window_jobs
from scripts.moto_server import QuickMotoServer
from scripts.provision import provision
from scripts.services import RedisServer, _ChildServer
from scripts.status import queue_depths
from scripts.table import render_table
from worker.daemon import build_dispatcher
from worker.queues import ATTR_REASON, QueueName
from worker.runtime import Runtime
from worker.sqs import OutgoingMessage, SqsClient

__all__ = ["DemoOutcome", "SimulatorServer", "run_demo"]

PREFIX = "demo"
COUPANG_RATE = 10.0  # the simulator's per-vendor calls/s; the catalogue budgets 5/s
NAVER_RATE = 2.0
MAX_SECONDS = 60.0
_COUPANG_ACCESS, (_COUPANG_VENDOR, _COUPANG_SECRET) = next(iter(DEFAULT_KEYS.items()))
_NAVER_ID, _NAVER_SECRET = next(iter(DEFAULT_APPS.items()))
_NAVER_SELLER = "naver-seller-1"


class SimulatorServer(_ChildServer):
    """`python -m markets.simulators MARKET` in its own process (its clock unslowed by ours)."""

    def __init__(self, market: str, rate: float) -> None:
        super().__init__()
        self.market = market
        self.rate = rate
        self.name = f"{market} simulator"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + ("/external" if self.market == "naver" else "")

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "markets.simulators", self.market,
                "--port", str(self.port), "--rate", str(self.rate)]  # fmt: skip

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.root}/_sim/stats", timeout=2) as answer:
            found: dict[str, Any] = json.load(answer)
            return found

    def _ready(self) -> bool:
        try:
            self.stats()
        except (urllib.error.URLError, OSError):
            return False
        return True


def _config_text(coupang: SimulatorServer, naver: SimulatorServer) -> str:
    return (
        f'[markets.coupang]\ncatalogue = "coupang"\nbase_url = "{coupang.base_url}"\n\n'
        f'[markets.naver]\ncatalogue = "naver"\nbase_url = "{naver.base_url}"\n'
    )


def _job(kind: str, market: str, seller: str, payload: dict[str, Any], key: str) -> str:
    body = {"kind": kind, "market": market, "seller": seller, "payload": payload,
            "id": producer_id(market, kind, seller, key)}  # fmt: skip
    return json.dumps(body)


def _load(config: Config) -> dict[tuple[str, Lane], list[str]]:
    """The demo's jobs by (market, lane): message bodies."""
    today = datetime.now(UTC).date()
    coupang, naver = config.market("coupang"), config.market("naver")
    low_coupang = [
        body
        for _, body in window_jobs(
            "coupang", coupang, _COUPANG_VENDOR, today - timedelta(days=29), today, None
        )
    ] + [
        _job("collect_order", "coupang", _COUPANG_VENDOR, {"shipment_box_id": 600_000_000 + n},
             f"box-{n}")
        for n in range(40)
    ]  # fmt: skip
    low_naver = [
        body
        for _, body in window_jobs(
            "naver", naver, _NAVER_SELLER, today - timedelta(days=2), today, timedelta(hours=6)
        )
    ]
    since = (today - timedelta(days=1)).isoformat()
    medium_coupang = [
        _job("collect_orders", "coupang", _COUPANG_VENDOR,
             {"since": since, "until": today.isoformat()}, f"scheduled-{n}")
        for n in range(5)
    ]  # fmt: skip
    medium_naver = [
        _job("collect_orders", "naver", _NAVER_SELLER,
             {"since": f"{since}T00:00:00+09:00"}, f"scheduled-{n}")
        for n in range(3)
    ]  # fmt: skip
    high_coupang = [
        _job("ship_order", "coupang", _COUPANG_VENDOR, {"invoices": [{
            "shipment_box_id": 600_000_000 + n, "order_id": 25_000_000_000 + n,
            "vendor_item_id": 1, "delivery_company_code": "CJGLS",
            "invoice_number": f"5000{n:06d}"}]}, f"ship-{n}")
        for n in range(1, 25) if n % 5  # the simulator's shippable (ACCEPT) boxes
    ] + [
        _job("answer_inquiry", "coupang", _COUPANG_VENDOR,
             {"inquiry_id": 3_000_000 + n, "content": "Shipped today.", "reply_by": "demo"},
             f"answer-{n}")
        for n in range(10)
    ]  # fmt: skip
    high_naver = [
        _job("answer_inquiry", "naver", _NAVER_SELLER,
             {"inquiry_no": 9_000_000 + n, "answer": "Shipped today."}, f"answer-{n}")
        for n in range(5)
    ]  # fmt: skip
    return {
        ("coupang", Lane.LOW): low_coupang,
        ("naver", Lane.LOW): low_naver,
        ("coupang", Lane.MEDIUM): medium_coupang,
        ("naver", Lane.MEDIUM): medium_naver,
        ("coupang", Lane.HIGH): high_coupang,
        ("naver", Lane.HIGH): high_naver,
    }


@dataclass
class DemoOutcome:
    served: Counter[str]
    rate_limited: int
    high_latencies: list[float]
    dead_letters: list[tuple[str, str, str]]
    left: int
    results: Path
    seconds: float
    sent_at: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.rate_limited == 0 and self.left == 0


async def _enqueue_all(
    sqs: SqsClient, settings: Settings, config: Config
) -> tuple[dict[str, float], int]:
    """Send the load (the malformed message last); returns high jobs' send times by id."""
    sent_at: dict[str, float] = {}
    count = 0
    for (market, lane), bodies in _load(config).items():
        url = await sqs.queue_url(QueueName(settings.queue_prefix, market, lane).queue)
        await sqs.send_batch(url, [OutgoingMessage(body=body) for body in bodies])
        count += len(bodies)
        if lane is Lane.HIGH:
            now = time.time()
            sent_at.update((json.loads(body)["id"], now) for body in bodies)
    poison = await sqs.queue_url(QueueName(settings.queue_prefix, "coupang", Lane.LOW).queue)
    await sqs.send_batch(poison, [OutgoingMessage(body='{"kind": "collect_orders", "oops"')])
    return sent_at, count + 1


async def _drained(sqs: SqsClient, settings: Settings, names: list[str]) -> int:
    depths = await queue_depths(sqs, settings.queue_prefix, names)
    return sum((depth.visible or 0) + (depth.in_flight or 0) for depth in depths)


async def _dead_letters(sqs: SqsClient, settings: Settings) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for market in ("coupang", "naver"):
        for lane in Lane:
            url = await sqs.queue_url(QueueName(settings.queue_prefix, market, lane).dead_letter)
            for message in await sqs.receive(url, max_messages=10, wait_seconds=0):
                reason = message.message_attributes.get(ATTR_REASON, "?")
                found.append((market, lane.value, reason))
    return found


async def _run(settings: Settings, config: Config, out: TextIO) -> DemoOutcome:
    names = ["coupang", "naver"]
    async with SqsClient(endpoint_url=settings.sqs_endpoint_url) as sqs:
        await provision(
            sqs,
            prefix=settings.queue_prefix,
            markets=names,
            policies=config.lanes,
            visibility_timeout=settings.visibility_timeout,
        )
        sent_at, count = await _enqueue_all(sqs, settings, config)
        print(f"enqueued {count} jobs in 6 lane queues; running the worker ...", file=out)
        started = time.monotonic()
        async with Runtime(settings, config) as runtime:
            dispatcher = await build_dispatcher(runtime, concurrency=16)
            running = asyncio.create_task(dispatcher.run())
            left = count
            while time.monotonic() - started < MAX_SECONDS and not running.done():
                await asyncio.sleep(1.0)
                left = await _drained(sqs, settings, names)
                print(f"  {time.monotonic() - started:4.0f}s: {left} job(s) left", file=out)
                if left == 0:
                    break
            dispatcher.stop()
            await running
        seconds = time.monotonic() - started
        dead = await _dead_letters(sqs, settings)
    results = Path(settings.results_url.removeprefix("file:"))
    return DemoOutcome(Counter(), 0, [], dead, left, results, seconds, sent_at)


def _tally(outcome: DemoOutcome) -> None:
    """Jobs done per lane and the high lane's latencies, from the results file."""
    if not outcome.results.exists():
        return
    for line in outcome.results.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        outcome.served[f"{record['market']}/{record['lane']}"] += 1
        sent = outcome.sent_at.get(record["id"])
        if sent is not None:
            finished = datetime.fromisoformat(record["finished_at"]).timestamp()
            outcome.high_latencies.append(finished - sent)


def _summary(outcome: DemoOutcome, stats: dict[str, dict[str, Any]], out: TextIO) -> None:
    rows = [[lane, count] for lane, count in sorted(outcome.served.items())]
    print("\n" + render_table(["market/lane", "jobs done"], rows), file=out)
    sim_rows = [
        [market, sum(s["served"].values()), sum(s["rate_limited"].values())]
        for market, s in stats.items()
    ]
    print("\n" + render_table(["simulator", "requests served", "429 answers"], sim_rows), file=out)
    if outcome.high_latencies:
        lat = sorted(outcome.high_latencies)
        print(
            f"\nhigh lane latency (enqueue to done): median {statistics.median(lat):.2f}s, "
            f"max {lat[-1]:.2f}s over {len(lat)} jobs",
            file=out,
        )
    print(f"\ndead-lettered: {len(outcome.dead_letters)}", file=out)
    for market, lane, reason in outcome.dead_letters:
        print(f"  {market}/{lane}: {reason}", file=out)
    print(f"\nresults: {outcome.results}", file=out)
    print(f"took {outcome.seconds:.0f}s; jobs left in the lane queues: {outcome.left}", file=out)


def run_demo(out: TextIO | None = None) -> int:
    """Run the demo; 0 when every lane drained and the simulators answered no 429."""
    out = out or sys.stdout
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    work = Path(tempfile.mkdtemp(prefix="lanes-demo-"))
    coupang = SimulatorServer("coupang", COUPANG_RATE)
    naver = SimulatorServer("naver", NAVER_RATE)
    print(f"lanes demo: starting redis, moto and the simulators (files in {work})", file=out)
    redis, moto = RedisServer(), QuickMotoServer()
    with redis, moto, coupang, naver:
        config_path = work / "demo.toml"
        config_path.write_text(_config_text(coupang, naver), encoding="utf-8")
        settings = load_settings(
            config=config_path,
            redis_url=redis.url,
            sqs_endpoint_url=moto.url,
            queue_prefix=PREFIX,
            results_url=f"file:{work / 'results.jsonl'}",
            log_level="error",
            wait_seconds=1,
            grace_seconds=5,
            visibility_timeout=30,
            credentials={
                "coupang": {"access_key": _COUPANG_ACCESS, "secret_key": _COUPANG_SECRET},
                "naver": {"client_id": _NAVER_ID, "client_secret": _NAVER_SECRET},
            },
        )
        config = markets.load_config(config_path)
        configure_logging(settings.log_level)  # JSON lines, errors only: the summary is the output
        print(f"config: {config_path}", file=out)
        outcome = asyncio.run(_run(settings, config, out))
        stats = {"coupang": coupang.stats(), "naver": naver.stats()}
    _tally(outcome)
    outcome.rate_limited = sum(sum(s["rate_limited"].values()) for s in stats.values())
    _summary(outcome, stats, out)
    return 0 if outcome.ok else 1
