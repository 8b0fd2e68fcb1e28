"""Everything a worker process holds open, in one owner: Redis, SQS, markets, the results sink.

The daemon and the Lambda handler both build their job processing from it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Self

import aiohttp

from lanes.limiter import Limiter
from lanes.resource import AsyncResource
from lanes.store import RedisStore
from markets import Markets
from markets.client import send_check_trace
from markets.config import Config
from worker.idempotency import IdempotencyGuard
from worker.metrics import Metrics
from worker.outcomes import Settler
from worker.processing import JobProcessor
from worker.settings import WorkerSettings
from worker.sinks import open_sink
from worker.sqs import SqsClient
from worker.tracking import Attempts, JobTracker

# Status records outlive their job by a day (the HTTP API's "job status").
TRACK_TTL = 86_400

__all__ = ["TRACK_TTL", "Connections", "Runtime"]


class Connections(AsyncResource):
    """What every process kind holds: Redis, SQS, the budget and the job records; the
    worker's `Runtime` and the HTTP API's runtime build on it. `aclose()` closes what was
    pushed on `_stack` (last first), safe twice."""

    def __init__(self, settings: WorkerSettings, config: Config) -> None:
        self.settings = settings
        self.config = config
        self._stack = AsyncExitStack()
        self.store = RedisStore(settings.redis_url)
        self.sqs = SqsClient(endpoint_url=settings.sqs_endpoint_url)
        self.limiter = Limiter(self.store.client, config.lanes)
        self.tracker = JobTracker(self.store.client, ttl=TRACK_TTL)
        self._stack.push_async_callback(self.store.aclose)
        # Before the Redis pool closes: status writes handed over are sent, not left behind.
        self._stack.push_async_callback(self.tracker.flush)
        self._stack.push_async_callback(self.sqs.aclose)
        self._stack.push_async_callback(self.limiter.aclose)

    async def _close(self) -> None:
        await self._stack.aclose()


class Runtime(Connections):
    """Opens on `async with` (or `open()`); `aclose()` closes all of it, safe twice.

    `lambda_mode` settles the Lambda event source's way (it deletes what succeeded).
    """

    def __init__(
        self, settings: WorkerSettings, config: Config, *, lambda_mode: bool = False
    ) -> None:
        super().__init__(settings, config)
        self.metrics = Metrics()
        self.guard = IdempotencyGuard(
            self.store.client,
            ttl=settings.idempotency_ttl,
            claim_seconds=settings.visibility_timeout,
            settle_seconds=settings.settle_seconds,
            restart_guard=True,
        )
        # The markets' session carries the hooks that mark a side effect "posting" and
        # measure budget waits and 429s.
        self.session = aiohttp.ClientSession(
            trace_configs=[
                self.guard.trace_config(),
                self.metrics.trace_config(),
                send_check_trace(),  # last: after the posting mark's round trip
            ]
        )
        self.markets = Markets(
            config, settings, self.limiter, self.store.client, session=self.session
        )
        self.sink = open_sink(
            settings.results_url,
            self.sqs,
            token=settings.credentials.get("results", {}).get("token"),
        )
        self.processor = JobProcessor(
            markets=self.markets,
            policies=config.lanes,
            guard=self.guard,
            attempts=Attempts(self.store.client, ttl=settings.idempotency_ttl),
            tracker=self.tracker,
            sink=self.sink,
            metrics=self.metrics,
            retry_backoff=settings.retry_backoff,
        )
        self.settler = Settler(
            self.sqs, deletes_done=not lambda_mode, tracker=self.tracker, metrics=self.metrics
        )

    async def open(self) -> Self:
        # Closed in reverse: the sink before the SQS client it may borrow.
        self._stack.push_async_callback(self.session.close)
        self._stack.push_async_callback(self.markets.aclose)
        self._stack.push_async_callback(self.sink.aclose)
        self._stack.push_async_callback(self.settler.drain)
        return self

    async def __aenter__(self) -> Self:
        return await self.open()
