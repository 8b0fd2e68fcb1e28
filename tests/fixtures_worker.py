"""Fixtures for the worker tests: SQS on the moto server, lane queues, a strict test market,
and an in-process worker.

The test market ("acme") runs in its own thread, so in-process workers, sync tests (the
Lambda handler) and worker subprocesses can all call it. It counts every arrival, answers
429 (and counts a violation) when more than `rps` requests arrive in any trailing second,
and obeys the query string: `status=503` answers that status, `sleep=0.5` delays,
`flaky=2` fails the first 2 arrivals of the same `key` with 503.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lanes.policy import Lane
from markets.config import Config
from scripts.local.services import MotoServer, RedisServer, free_port
from tests.fixtures_markets import AcmeTable
from worker.daemon import Dispatcher, build_dispatcher
from worker.envelope import Envelope
from worker.queues import Delivery, QueueName
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.sqs import OutgoingMessage, SqsClient, SqsMessage

_numbers = itertools.count()


@pytest.fixture
async def sqs(sqs_endpoint: str) -> AsyncIterator[SqsClient]:
    """An open `SqsClient` on the test moto server."""
    async with SqsClient(endpoint_url=sqs_endpoint) as client:
        yield client


@pytest.fixture
def make_queue(sqs: SqsClient) -> Callable[..., Awaitable[str]]:
    """Factory: `await make_queue(name=None, visibility_timeout=30)` -> the new queue URL.

    Names are unique per call, since the moto server lives for the whole session.
    """

    async def make(name: str | None = None, *, visibility_timeout: int = 30) -> str:
        queue = name or f"test-{next(_numbers)}-{id(sqs):x}"
        answer = await sqs.raw.create_queue(
            QueueName=queue, Attributes={"VisibilityTimeout": str(visibility_timeout)}
        )
        return answer["QueueUrl"]

    return make


# -- the test market -------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: float
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class AcmeMarket:
    """A strict little market on a free port, served from its own thread."""

    rps: int = 20
    port: int = field(default_factory=free_port)
    arrivals: list[Arrival] = field(default_factory=list)
    violations: int = 0
    _recent: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _flaky: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def table(self) -> AcmeTable:
        """Its config: a GET `orders` and a POST `ship`, each at its `rps`."""
        endpoints = {"orders": ("GET", "/orders"), "ship": ("POST", "/ship")}
        return AcmeTable(self.url, endpoints, rps=self.rps, timeout=5.0)

    def calls(self, path: str | None = None) -> list[Arrival]:
        return [a for a in list(self.arrivals) if path is None or a.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        body = await request.json() if request.can_read_body else None
        query = dict(request.query)
        self.arrivals.append(Arrival(now, request.method, request.path, query, body))
        recent = self._recent[request.path]
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        recent.append(now)
        if len(recent) > self.rps:
            self.violations += 1
            return web.json_response({"error": "rate limited"}, status=429)
        if "sleep" in query:
            await asyncio.sleep(float(query["sleep"]))
        if "flaky" in query:
            key = query.get("key", "")
            self._flaky[key] += 1
            if self._flaky[key] <= int(query["flaky"]):
                return web.json_response({"error": "flaky"}, status=503)
        status = int(query.get("status", "200"))
        return web.json_response({"ok": status < 300, "echo": query}, status=status)

    def start(self) -> None:
        ready = threading.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="acme-market", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture
def acme() -> Iterator[AcmeMarket]:
    """A fresh strict test market (20 requests per second per path)."""
    market = AcmeMarket()
    market.start()
    yield market
    market.stop()


def job(
    endpoint: str = "orders", *, id: str | None = None, seller: str = "s-1", **params: Any
) -> str:
    """A `call` message body for acme (built by `Envelope.body()`, as producers do)."""
    payload = {"endpoint": endpoint, "params": params}
    return Envelope(kind="call", market="acme", seller=seller, payload=payload, id=id).body()


# -- lane queues -----------------------------------------------------------------------------


@dataclass
class Lanes:
    """The six queues of market "acme" under a unique prefix, with test helpers."""

    sqs: SqsClient
    prefix: str
    urls: dict[str, str] = field(default_factory=dict)

    def name(self, lane: Lane, *, dead: bool = False) -> str:
        queue = QueueName(self.prefix, "acme", lane)
        return queue.dead_letter if dead else queue.queue

    def url(self, lane: Lane, *, dead: bool = False) -> str:
        return self.urls[self.name(lane, dead=dead)]

    async def send(self, lane: Lane, bodies: list[str]) -> None:
        await self.sqs.send_batch(self.url(lane), [OutgoingMessage(body=b) for b in bodies])

    async def take_all(self, lane: Lane, *, dead: bool = False) -> list[SqsMessage]:
        """Every message visible now (kept invisible for a minute while counting)."""
        taken: list[SqsMessage] = []
        while True:
            got = await self.sqs.receive(
                self.url(lane, dead=dead), max_messages=10, wait_seconds=0, visibility_timeout=60
            )
            if not got:
                return taken
            taken.extend(got)

    async def depth(self, lane: Lane, *, dead: bool = False) -> tuple[int, int]:
        """(visible, in flight) approximate counts."""
        attrs = await self.sqs.attributes(self.url(lane, dead=dead))
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )


@pytest.fixture
async def lanes(sqs: SqsClient) -> Lanes:
    """Fresh lane and dead-letter queues for market "acme" (visibility timeout 10 s)."""
    made = Lanes(sqs=sqs, prefix=f"t{next(_numbers)}x{int(time.time() * 1000) % 100000}")
    for lane in Lane:
        for dead in (False, True):
            name = made.name(lane, dead=dead)
            answer = await sqs.raw.create_queue(
                QueueName=name, Attributes={"VisibilityTimeout": "10"}
            )
            made.urls[name] = answer["QueueUrl"]
    return made


# -- workers ---------------------------------------------------------------------------------


@pytest.fixture
def make_settings(
    redis_server: RedisServer, moto_server: MotoServer, lanes: Lanes, tmp_path: Path
) -> Callable[..., WorkerSettings]:
    """Factory: worker settings on the test Redis, moto and lanes, results in tmp_path."""

    def make(**overrides: Any) -> WorkerSettings:
        values: dict[str, Any] = {
            "config": tmp_path / "lanes.toml",
            "redis_url": redis_server.url,
            "sqs_endpoint_url": moto_server.url,
            "queue_prefix": lanes.prefix,
            "visibility_timeout": 10,
            "wait_seconds": 1,
            "grace_seconds": 5.0,
            "concurrency": 8,
            "settle_seconds": 2.0,  # the simulators' slow answers take 1.5 s
            "results_url": f"file:{tmp_path / 'results.jsonl'}",
            **overrides,
        }
        return WorkerSettings(**values)

    return make


def results(settings: WorkerSettings) -> list[dict[str, Any]]:
    path = Path(settings.results_url.removeprefix("file:"))
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@dataclass
class RunningWorker:
    runtime: Runtime
    dispatcher: Dispatcher
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.dispatcher.stop()
        await self.task
        await self.runtime.aclose()


@pytest.fixture
async def start_worker(store: Any) -> AsyncIterator[Callable[..., Awaitable[RunningWorker]]]:
    """Factory: `await start_worker(settings, config, concurrency=None, job_seconds=600)`.

    Runs the real dispatcher in this event loop; stopped at the end of the test.
    """
    started: list[RunningWorker] = []

    async def start(
        settings: WorkerSettings, config: Config, *, concurrency: int | None = None, **kw: Any
    ) -> RunningWorker:
        runtime = Runtime(settings, config)
        runtime.guard.restart_guard = False  # as make_runtime below
        await runtime.open()
        dispatcher = await build_dispatcher(runtime, concurrency=concurrency, **kw)
        worker = RunningWorker(runtime, dispatcher, asyncio.create_task(dispatcher.run()))
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if not worker.task.done():
            await worker.stop()
        await worker.runtime.aclose()


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Poll `check` every 0.1 s until it holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.1)


@pytest.fixture
async def make_runtime(
    store: Any,
) -> AsyncIterator[Callable[[WorkerSettings, Config], Awaitable[Runtime]]]:
    """Factory: `await make_runtime(settings, config)`, an open `Runtime` closed after the test."""
    opened: list[Runtime] = []

    async def make(settings: WorkerSettings, config: Config) -> Runtime:
        runtime = Runtime(settings, config)
        # This Redis is the tests' own and each test empties it: a budget's first window
        # would wait as if data were lost (rule 10, tested on its own in test_budget_rules).
        runtime.limiter._restart_guard = False
        runtime.guard.restart_guard = False  # and a claim in its first seconds (rule 11)
        await runtime.open()
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        await runtime.aclose()


async def deliver(lanes: Lanes, lane: Lane, bodies: list[str]) -> list[Delivery]:
    """Send `bodies` to the lane queue and receive them back as deliveries."""
    await lanes.send(lane, bodies)
    return await receive_deliveries(lanes, lane, len(bodies))


async def receive_deliveries(lanes: Lanes, lane: Lane, count: int) -> list[Delivery]:
    """Receive `count` messages of the lane queue as deliveries."""
    url = lanes.url(lane)
    got: list[Delivery] = []
    while len(got) < count:
        messages = await lanes.sqs.receive(url, max_messages=10, wait_seconds=1)
        queue = QueueName(lanes.prefix, "acme", lane)
        got.extend(Delivery(message=m, queue=queue, url=url) for m in messages)
    return got
