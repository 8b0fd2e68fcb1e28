"""Operator metrics per market and lane: Prometheus for the daemon, EMF lines for Lambda.

| series (Prometheus)                    | what                                                  |
|----------------------------------------|-------------------------------------------------------|
| `lanes_jobs_total{outcome}`            | settled: done, retried, dead_lettered, waited         |
| `lanes_job_failures_total{error}`      | failed attempts and dead letters by outcome label     |
| `lanes_waits_total{reason}`            | waits that spent no attempt (cooldown, Redis, sink..) |
| `lanes_enqueue_to_start_seconds`       | from the producer's send to the job starting          |
| `lanes_budget_wait_seconds`            | from the job starting to its first request leaving    |
| `lanes_market_429_total`               | answers 429 (each cools the budget)                   |
| `lanes_queue_depth{state}`             | visible and in-flight messages of the lane queue      |
| `lanes_queue_oldest_age_seconds`       | age of the oldest message received in the last poll   |

Every series carries `market` and `lane`. The daemon serves them at
`/metrics` with a `/healthz` probe when `LANES_METRICS_PORT` is set; the Lambda
handler prints the same counts as CloudWatch Embedded Metric Format lines
after each batch (namespace `lanes`, dimensions market and lane).
"""

from __future__ import annotations

import contextvars
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from lanes.resource import AsyncResource
from worker.queues import QueueName
from worker.sqs import SqsMessage

__all__ = ["EMF_NAMESPACE", "Metrics", "MetricsServer"]

EMF_NAMESPACE = "lanes"
_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
_LANE = ("market", "lane")


@dataclass
class _Job:
    queue: QueueName
    started: float
    sent: bool = False


_current: contextvars.ContextVar[_Job | None] = contextvars.ContextVar(
    "lanes_metrics_job", default=None
)


class Metrics:
    """One process's metrics, in its own registry (several workers may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._jobs = Counter(
            "lanes_jobs",
            "Messages settled, by outcome",
            [*_LANE, "outcome"],
            registry=self.registry,
        )
        self._failures = Counter(
            "lanes_job_failures",
            "Failed attempts and dead letters, by outcome label",
            [*_LANE, "error"],
            registry=self.registry,
        )
        self._waits = Counter(
            "lanes_waits",
            "Waits that spent no attempt, by reason",
            [*_LANE, "reason"],
            registry=self.registry,
        )
        self._enqueue = Histogram(
            "lanes_enqueue_to_start_seconds",
            "From the producer's send to the job's start",
            _LANE,
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self._budget = Histogram(
            "lanes_budget_wait_seconds",
            "From the job's start to its first request leaving",
            _LANE,
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self._rate_limited = Counter(
            "lanes_market_429", "Answers 429 from the market", _LANE, registry=self.registry
        )
        self._depth = Gauge(
            "lanes_queue_depth",
            "Messages in the lane queue",
            [*_LANE, "state"],
            registry=self.registry,
        )
        self._oldest = Gauge(
            "lanes_queue_oldest_age_seconds",
            "Age of the oldest message in the last poll",
            _LANE,
            registry=self.registry,
        )
        self._emf: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def _count(self, queue: QueueName, name: str, value: float = 1.0) -> None:
        self._emf[(queue.market, queue.lane.value)][name] += value

    # -- what the worker reports ---------------------------------------------------------

    def settled(self, queue: QueueName, action: str, label: str, *, free: bool) -> None:
        """A message was settled with `action` (delete, release, dead_letter) as `label`."""
        lane = (queue.market, queue.lane.value)
        if action == "delete":
            outcome = "done"
        elif action == "dead_letter":
            outcome = "dead_lettered"
        else:
            outcome = "waited" if free else "retried"
        self._jobs.labels(*lane, outcome).inc()
        self._count(queue, f"Jobs_{outcome}")
        if outcome == "waited":
            self._waits.labels(*lane, label).inc()
            self._count(queue, "Waits")
        elif outcome != "done":
            self._failures.labels(*lane, label).inc()
            self._count(queue, "Failures")

    def waited(self, queue: QueueName, reason: str) -> None:
        """A wait held in process (no release): counted with the releases' waits."""
        self._waits.labels(queue.market, queue.lane.value, reason).inc()
        self._count(queue, "Waits")

    def received(self, queue: QueueName, messages: Sequence[SqsMessage]) -> None:
        now = datetime.now(UTC)
        ages = [(now - message.sent_at).total_seconds() for message in messages]
        if ages:
            self._oldest.labels(queue.market, queue.lane.value).set(max(0.0, max(ages)))

    def depth(self, queue: QueueName, visible: int, in_flight: int) -> None:
        self._depth.labels(queue.market, queue.lane.value, "visible").set(visible)
        self._depth.labels(queue.market, queue.lane.value, "in_flight").set(in_flight)

    @contextmanager
    def job(self, queue: QueueName, message: SqsMessage) -> Iterator[None]:
        """Around one job: its enqueue-to-start time, and its requests seen by `trace_config`."""
        waited = max(0.0, (datetime.now(UTC) - message.sent_at).total_seconds())
        self._enqueue.labels(queue.market, queue.lane.value).observe(waited)
        self._count(queue, "EnqueueToStartSeconds", waited)
        reset = _current.set(_Job(queue, time.monotonic()))
        try:
            yield
        finally:
            _current.reset(reset)

    def trace_config(self) -> aiohttp.TraceConfig:
        """Hooks for the markets' HTTP session: budget wait (start to first request) and 429s."""
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._request_start)
        config.on_request_end.append(self._request_end)
        return config

    async def _request_start(self, _s: aiohttp.ClientSession, _c: SimpleNamespace, _p: Any) -> None:
        job = _current.get()
        if job is not None and not job.sent:
            job.sent = True
            waited = time.monotonic() - job.started
            self._budget.labels(job.queue.market, job.queue.lane.value).observe(waited)
            self._count(job.queue, "BudgetWaitSeconds", waited)

    async def _request_end(
        self, _s: aiohttp.ClientSession, _c: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        job = _current.get()
        if job is not None and params.response.status == 429:
            self._rate_limited.labels(job.queue.market, job.queue.lane.value).inc()
            self._count(job.queue, "Answers429")

    # -- Lambda: CloudWatch Embedded Metric Format ---------------------------------------

    def emf_lines(self) -> list[str]:
        """One EMF JSON line per market and lane with the counts since the last call."""
        stamp = int(time.time() * 1000)
        lines = []
        for (market, lane), values in sorted(self._emf.items()):
            unit = {name: "Seconds" if name.endswith("Seconds") else "Count" for name in values}
            document: dict[str, Any] = {
                "_aws": {
                    "Timestamp": stamp,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": EMF_NAMESPACE,
                            "Dimensions": [list(_LANE)],
                            "Metrics": [{"Name": n, "Unit": u} for n, u in sorted(unit.items())],
                        }
                    ],
                },
                "market": market,
                "lane": lane,
                **{name: round(value, 3) for name, value in sorted(values.items())},
            }
            lines.append(json.dumps(document, separators=(",", ":")))
        self._emf.clear()
        return lines


class MetricsServer(AsyncResource):
    """`/metrics` (Prometheus text) and `/healthz` (200 while `health()` says ok, else 503)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        health: Callable[[], Mapping[str, Any]],
    ) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._health = health
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> MetricsServer:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        return self

    async def _scrape(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        state = dict(self._health())
        return web.json_response(state, status=200 if state.get("status") == "ok" else 503)

    async def _close(self) -> None:
        await self._runner.cleanup()
