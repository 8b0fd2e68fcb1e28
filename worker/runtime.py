"""Everything a worker process holds open, in one owner: Redis, SQS, markets, the results sink.

The daemon and the Lambda handler both build their job processing from it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Self

from lanes.config import Config
from lanes.limiter import Limiter
from lanes.resource import AsyncResource
from lanes.settings import Settings
from lanes.store import RedisStore
from markets import Markets
from worker.idempotency import IdempotencyGuard
from worker.outcomes import Settler
from worker.processing import JobProcessor
from worker.sinks import open_sink
from worker.sqs import SqsClient
from worker.tracking import ReleaseLedger

__all__ = ["Runtime"]


class Runtime(AsyncResource):
    """Opens on `async with` (or `open()`); `aclose()` closes all of it, safe twice.

    `lambda_mode` settles the Lambda event source's way (it deletes what succeeded).
    """

    def __init__(self, settings: Settings, config: Config, *, lambda_mode: bool = False) -> None:
        self.settings = settings
        self.config = config
        self._stack = AsyncExitStack()
        self.store = RedisStore(settings.redis_url)
        self.sqs = SqsClient(endpoint_url=settings.sqs_endpoint_url)
        self.limiter = Limiter(self.store.client, config.lanes)
        self.markets = Markets(config, settings, self.limiter, self.store.client)
        self.sink = open_sink(
            settings.results_url,
            self.sqs,
            token=settings.credentials.get("results", {}).get("token"),
        )
        self.guard = IdempotencyGuard(
            self.store.client,
            ttl=settings.idempotency_ttl,
            claim_seconds=settings.visibility_timeout,
        )
        self.processor = JobProcessor(
            markets=self.markets,
            policies=config.lanes,
            guard=self.guard,
            ledger=ReleaseLedger(self.store.client, ttl=settings.idempotency_ttl),
            sink=self.sink,
        )
        self.settler = Settler(self.sqs, deletes_done=not lambda_mode)

    async def open(self) -> Self:
        # Closed in reverse: the sink before the SQS client it may borrow.
        self._stack.push_async_callback(self.store.aclose)
        self._stack.push_async_callback(self.sqs.aclose)
        self._stack.push_async_callback(self.markets.aclose)
        self._stack.push_async_callback(self.sink.aclose)
        self._stack.push_async_callback(self.settler.drain)
        return self

    async def __aenter__(self) -> Self:
        return await self.open()

    async def _close(self) -> None:
        await self._stack.aclose()
