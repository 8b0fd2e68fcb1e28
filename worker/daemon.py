"""The daemon: one long-poll task per lane queue, a weighted pick, a slot cap; its entry point.

`lanes worker` and `python -m worker` both run `serve` (exit 0 after a clean
shutdown, 2 for a start-up mistake such as a bad setting, an unknown market or a
missing queue, 1 for a failure while running), one line on stderr, no traceback.

Slots. The process runs at most `concurrency` jobs. Each lane queue has a
floor (`min_slots`): slots the other queues may not take while this one runs
fewer, so a flood of high work never starves low of every slot. A queue's
poller receives only as many messages as it could start now (at most 10), so
messages are never hoarded.

Pick. Received messages wait in their queue's buffer (kept invisible by the
heartbeat). Whenever a slot is free, a queue below its floor goes first;
otherwise a smooth weighted round robin over the queues that have messages
(high 6, medium 3, low 1 by default) picks, so an empty lane simply falls
through to the next. Within a queue, the buffer starts its messages round
robin across sellers (`worker.fairness`, `LANES_SELLER_BUFFER` messages per
queue): its poller receives while the buffer has room, not only while slots
are free, and sets aside what a seller holds beyond its share, so it reaches
the other sellers behind one seller's backlog. With the buffer off, a poller
receives only what it could start now.

Shutdown. `stop` stops receiving; a receive in flight is let finish (never
abandoned: its endpoint would hand it the next message) and what it got goes
back at once, as do buffered messages; in-flight jobs get `grace_seconds` to
finish, then are cancelled and their messages released with visibility 0.

Metrics. With `LANES_METRICS_PORT` set, `serve` also answers `/metrics` and
`/healthz` (`worker.metrics`).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.exceptions import RedisError

from lanes.errors import ConfigError
from lanes.logs import redact_url
from lanes.policy import Lane, LanePolicy
from markets import missing_credentials
from markets.config import Config
from worker.fairness import ASIDE_TIMEOUTS, SellerBuffer
from worker.heartbeat import Heartbeat
from worker.metrics import Metrics, MetricsServer
from worker.outcomes import MAX_VISIBILITY, Outcome, Settler
from worker.pauses import LanePauses
from worker.processing import JobProcessor
from worker.queues import Delivery, QueueName
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.sqs import BATCH_ENTRIES, QueueMissing, SqsClient, SqsError, SqsMessage

__all__ = [
    "DEFAULT_JOB_SECONDS",
    "Dispatcher",
    "LaneSource",
    "build_dispatcher",
    "serve",
]

# How long one delivery may retry or wait in process before it goes back to its queue.
DEFAULT_JOB_SECONDS = 600.0
_POLL_BACKOFF_CAP = 30.0
# Beyond a long poll's wait: how long shutdown waits for a receive in flight to answer.
_POLL_SLACK = 5.0
# An empty short poll (LANES_WAIT_SECONDS=0) waits this long before asking again.
# Queue depth for the metrics, asked this often.
_DEPTH_PERIOD = 15.0
# A paused lane's poller looks at the flag again after this long.
_PAUSED_RECHECK = 1.0
# Set-aside messages remembered as never run (`Dispatcher._unrun`); beyond, the oldest
# forgotten (its next delivery then reads for a kept result, as any redelivery).
_UNRUN_KEPT = 50_000
_DEPTH_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
_log = structlog.get_logger("worker.daemon")


@dataclass(eq=False)
class LaneSource:
    """One lane queue of one market: its policy, buffer and running jobs."""

    queue: QueueName
    url: str
    policy: LanePolicy
    floor: int = 0
    buffer: SellerBuffer = field(default_factory=SellerBuffer.in_order)
    running: int = 0
    current: int = 0  # smooth weighted round robin state
    drained: bool = False  # the last receive got fewer than it asked for

    @property
    def weight(self) -> int:
        return self.policy.weight


class Dispatcher:
    """Drains `sources` until `stop()`; see the module text for the rules."""

    def __init__(
        self,
        *,
        sqs: SqsClient,
        processor: JobProcessor,
        settler: Settler,
        sources: list[LaneSource],
        concurrency: int,
        visibility_timeout: int,
        wait_seconds: int,
        grace_seconds: float,
        job_seconds: float = DEFAULT_JOB_SECONDS,
        metrics: Metrics | None = None,
        seller_buffer: int = 0,
        pauses: LanePauses | None = None,
    ) -> None:
        self._metrics = metrics
        self._pauses = pauses
        self._sqs = sqs
        self._processor = processor
        self._settler = settler
        self.sources = sources
        self.concurrency = concurrency
        self._visibility_timeout = visibility_timeout
        self._wait_seconds = wait_seconds
        self._grace_seconds = grace_seconds
        self._job_seconds = job_seconds
        self.heartbeat = Heartbeat(settler, visibility_timeout)
        self._changed = asyncio.Condition()
        self._jobs: dict[asyncio.Task[None], tuple[LaneSource, str, Delivery]] = {}
        self._stopped = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        # Set-aside visibility changes not yet answered, by delivery (see `_recall`).
        self._asides: dict[Delivery, asyncio.Task[Any]] = {}
        # Message id -> the receive count of its delivery last set aside here, kept only
        # while every delivery before it was set aside here too (oldest dropped first past
        # `_UNRUN_KEPT`): its next delivery, if this worker receives it, never ran anywhere.
        self._unrun: dict[str, int] = {}
        for source in sources if seller_buffer else ():
            source.buffer = SellerBuffer(
                seller_buffer,
                floor=max(concurrency, 2 * BATCH_ENTRIES),
                window=visibility_timeout,
                max_aside=min(MAX_VISIBILITY // 2, ASIDE_TIMEOUTS * visibility_timeout),
            )
        floors = sum(source.policy.min_slots for source in sources)
        if floors < concurrency:
            for source in sources:
                source.floor = source.policy.min_slots
        else:
            _log.warning(
                "dispatcher.floors_off",
                concurrency=concurrency,
                floors=floors,
                reason="concurrency does not exceed the sum of the lanes' min_slots",
            )

    @property
    def outcomes(self) -> dict[str, int]:
        """Messages settled so far, by outcome label."""
        return self._settler.counts

    # -- slots -----------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return sum(source.running for source in self.sources)

    def _startable(self, source: LaneSource) -> int:
        """Jobs `source` could start now: free slots minus other queues' unmet floors."""
        reserved = sum(
            max(0, other.floor - other.running) for other in self.sources if other is not source
        )
        return self.concurrency - self.running - reserved

    def _room(self, source: LaneSource) -> int:
        """Messages `source`'s poller may receive now."""
        buffer = source.buffer
        if buffer.fair:
            room = buffer.limit(time.monotonic()) - len(buffer)
        else:
            room = self._startable(source) - len(buffer)
        return max(0, min(BATCH_ENTRIES, room))

    def _pick(self) -> LaneSource | None:
        ready = [s for s in self.sources if s.buffer and self._startable(s) > 0]
        if not ready:
            return None
        below_floor = [s for s in ready if s.running < s.floor]
        if below_floor:
            return below_floor[0]
        total = sum(s.weight for s in ready)
        for source in ready:
            source.current += source.weight
        chosen = max(ready, key=lambda s: s.current)  # first of equals: sources run high to low
        chosen.current -= total
        return chosen

    # -- running ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the dispatcher to shut down (safe from a signal handler)."""
        self._stopped.set()

    async def run(self) -> None:
        """Drain until `stop()`, then shut down as the module text says."""
        _log.info(
            "worker.started",
            queues=[s.queue.queue for s in self.sources],
            concurrency=self.concurrency,
        )
        pollers = [asyncio.create_task(self._poll_forever(source)) for source in self.sources]
        helpers = [
            asyncio.create_task(self._dispatch_forever()),
            asyncio.create_task(self.heartbeat.run()),
        ]
        if self._metrics is not None:
            helpers.append(asyncio.create_task(self._measure_queues(self._metrics)))
        try:
            await self._stopped.wait()
        finally:
            _log.info("worker.stopping", running=self.running, grace_seconds=self._grace_seconds)
            self._stopped.set()
            await self._notify()
            # A receive in flight is never abandoned (its endpoint would still hand it the
            # next message, invisible with no one holding it): it finishes, and what it got
            # goes straight back. Bounded, in case the endpoint hangs.
            _, hanging = await asyncio.wait(pollers, timeout=self._wait_seconds + _POLL_SLACK)
            await _cancel_all(list(hanging))
            await self._release_buffered()
            await self._finish_jobs()
            await _cancel_all(helpers)
            if self._background:  # recalls and set-asides under way: to SQS before the end
                await asyncio.wait(list(self._background))
            await self._settler.drain()
            _log.info("worker.stopped", outcomes=self._settler.counts)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def health(self) -> dict[str, Any]:
        """What `/healthz` answers: ok until the dispatcher stops."""
        return {
            "status": "stopping" if self._stopped.is_set() else "ok",
            "running": self.running,
            "held": self.heartbeat.held,
        }

    async def _measure_queues(self, metrics: Metrics) -> None:
        while True:
            for source in self.sources:
                try:
                    found = await self._sqs.attributes(source.url, _DEPTH_ATTRIBUTES)
                except SqsError as exc:
                    _log.warning("metrics.depth_failed", queue=source.queue.queue, error=str(exc))
                    continue
                visible, in_flight = (int(found.get(name, 0)) for name in _DEPTH_ATTRIBUTES)
                metrics.depth(source.queue, visible, in_flight)
            await asyncio.sleep(_DEPTH_PERIOD)

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the dispatcher stops meanwhile."""
        try:
            await asyncio.wait_for(self._stopped.wait(), seconds)
        except TimeoutError:
            return

    async def _poll_forever(self, source: LaneSource) -> None:
        failures = 0
        while not self._stopped.is_set():
            async with self._changed:
                await self._changed.wait_for(
                    lambda: self._room(source) > 0 or self._stopped.is_set()
                )
                want = self._room(source)
                # Only when the queue shows nothing more: a recalled message is older than
                # the other sellers' visible ones and would be received before them.
                idle = source.drained and self._startable(source) > len(source.buffer)
                recalled = source.buffer.recall(time.monotonic(), want) if idle else []
            if self._stopped.is_set():
                return
            # Visible before this receive asks; a failed one returns when due.
            await asyncio.gather(*(self._recall(d) for d in recalled))
            lane = source.queue
            if self._pauses and await self._pauses.paused(lane.market, lane.lane):
                await self._pause(_PAUSED_RECHECK)  # an operator paused it (`lanes pause`)
                continue
            asked = time.monotonic()
            try:
                messages = await self._sqs.receive(
                    source.url,
                    max_messages=want,
                    wait_seconds=self._wait_seconds,
                    visibility_timeout=self._visibility_timeout,
                )
            except SqsError as exc:
                failures += 1
                pause = min(_POLL_BACKOFF_CAP, 2.0**failures)
                _log.warning("poll.failed", queue=source.queue.queue, error=str(exc), pause=pause)
                await self._pause(pause)
                continue
            failures = 0
            source.drained = len(messages) < want
            if self._metrics is not None:
                self._metrics.received(source.queue, messages)
            if not messages:
                continue  # a long poll (LANES_WAIT_SECONDS >= 1) paces an idle worker
            if self._stopped.is_set():
                received = [
                    Delivery(message=m, queue=source.queue, url=source.url) for m in messages
                ]
                await asyncio.gather(*(self._release_unstarted(d) for d in received))
                return
            now = time.monotonic()
            invisible_until = asked + self._visibility_timeout  # what the receive set, at least
            for message in messages:
                delivery = self._delivery(source, message)
                seconds = source.buffer.add(delivery, now, invisible_until=invisible_until)
                if seconds != 0 and delivery.never_ran:
                    self._remember_unrun(message)
                if seconds > 0:
                    # Not awaited: the poller reaches further while the batch call goes out;
                    # a failed one returns on its own.
                    self._set_aside(source, delivery, seconds)
                elif seconds == 0:
                    self.heartbeat.track(delivery)
            await self._notify()

    def _delivery(self, source: LaneSource, message: SqsMessage) -> Delivery:
        """The delivery of `message`, `never_ran` if its deliveries before were all set aside
        here (the first one trivially). A rare duplicate delivery that ran elsewhere is
        not seen: at worst its job runs again (a claimed side effect still does not)."""
        last_aside = self._unrun.pop(message.message_id, 0)
        never_ran = last_aside == message.receive_count - 1
        return Delivery(message=message, queue=source.queue, url=source.url, never_ran=never_ran)

    def _remember_unrun(self, message: SqsMessage) -> None:
        self._unrun[message.message_id] = message.receive_count
        if len(self._unrun) > _UNRUN_KEPT:  # set aside here, received by other workers
            del self._unrun[next(iter(self._unrun))]

    async def _dispatch_forever(self) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(self._pick_ready)
                while (source := self._pick()) is not None:
                    now = time.monotonic()
                    seller, delivery = source.buffer.pop(now)
                    self._start(source, seller, delivery)
                    if (forward := source.buffer.recall_for(seller, now)) is not None:
                        self._in_background(self._recall(forward))
                self._changed.notify_all()

    def _pick_ready(self) -> bool:
        return any(s.buffer and self._startable(s) > 0 for s in self.sources)

    def _start(self, source: LaneSource, seller: str, delivery: Delivery) -> None:
        source.running += 1
        task = asyncio.create_task(self._job(delivery))
        self._jobs[task] = (source, seller, delivery)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        source, seller, delivery = self._jobs.pop(task)
        source.running -= 1
        if (forward := source.buffer.finished(seller, time.monotonic())) is not None:
            self._in_background(self._recall(forward))
        self.heartbeat.forget(delivery)
        if not task.cancelled() and task.exception() is not None:
            _log.error("job.settle_crashed", error=repr(task.exception()))
        self._in_background(self._notify())

    def _in_background(self, work: Coroutine[Any, Any, object]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _set_aside(self, source: LaneSource, delivery: Delivery, seconds: int) -> None:
        task = self._in_background(self._settler.release(delivery, seconds))
        self._asides[delivery] = task

        def answered(task: asyncio.Task[Any]) -> None:
            self._asides.pop(delivery, None)
            if _refused(task):
                source.buffer.forget(delivery)  # back at its receive's end: not recalled

        task.add_done_callback(answered)

    async def _recall(self, delivery: Delivery) -> None:
        """Make a set-aside message visible now, after its set-aside change was answered:
        the two in one batch call (one receipt twice) left it invisible for the whole
        visibility timeout on moto. Not if that change failed: the message is visible again
        when its receive's visibility ends, and then perhaps another worker's."""
        pending = self._asides.get(delivery)
        if pending is not None:
            await asyncio.wait([pending])
            if _refused(pending):
                return
        await self._settler.release(delivery, 0)

    async def _job(self, delivery: Delivery) -> None:
        deadline = time.monotonic() + self._job_seconds
        try:
            outcome = await self._processor.process(delivery, deadline=deadline)
        except asyncio.CancelledError:
            # Shutdown ran past its grace period: the message goes straight back.
            await self._settle(delivery, Outcome.release("shutdown", 0))
            raise
        settling = asyncio.ensure_future(self._settle(delivery, outcome))
        try:
            await asyncio.shield(settling)
        except asyncio.CancelledError:
            await settling  # a half-done settle would leave a dead letter twice
            raise

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        self.heartbeat.forget(delivery)
        await self._settler.settle(delivery, outcome)

    async def _release_buffered(self) -> None:
        """Hand back what was received and not started: buffered messages, and set-aside
        ones (those within `RECALL_GUARD` of their return come back on their own)."""
        now = time.monotonic()
        buffered = [delivery for source in self.sources for delivery in source.buffer.drain()]
        aside = [delivery for source in self.sources for delivery in source.buffer.recall(now)]
        # Together, so the releases share batch calls.
        await asyncio.gather(
            *(self._release_unstarted(delivery) for delivery in buffered),
            *(self._recall(delivery) for delivery in aside),
        )

    async def _release_unstarted(self, delivery: Delivery) -> None:
        await self._settle(delivery, Outcome.release("shutdown", 0))

    async def _finish_jobs(self) -> None:
        if not self._jobs:
            return
        _, pending = await asyncio.wait(list(self._jobs), timeout=self._grace_seconds)
        if pending:
            _log.warning("worker.grace_over", cancelling=len(pending))
            await _cancel_all(list(pending))


def _refused(change: asyncio.Task[Any]) -> bool:
    """Whether a visibility change did not take (failed, raised or was cancelled)."""
    return change.cancelled() or change.exception() is not None or not change.result()


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _market_names(config: Config, wanted: Sequence[str] | None) -> list[str]:
    names = list(wanted) if wanted else sorted(config.markets)
    if not names:
        raise ConfigError("no markets configured: add a [markets.NAME] table")
    for name in names:
        config.market(name)  # raises one-line ConfigError for an unknown market
    return names


async def _sources(runtime: Runtime, names: list[str]) -> list[LaneSource]:
    """The lane queues, high to low per market; each queue and its dead-letter queue must exist."""
    sources = []
    for lane in Lane:
        for name in names:
            queue = QueueName(runtime.settings.queue_prefix, name, lane)
            try:
                url = await runtime.sqs.queue_url(queue.queue)
                await runtime.sqs.queue_url(queue.dead_letter)
            except QueueMissing as exc:
                raise ConfigError(f"{exc} (run `lanes provision`)") from exc
            sources.append(LaneSource(queue=queue, url=url, policy=runtime.config.lanes[lane]))
    return sources


async def build_dispatcher(
    runtime: Runtime,
    *,
    markets: Sequence[str] | None = None,
    concurrency: int | None = None,
    job_seconds: float = DEFAULT_JOB_SECONDS,
) -> Dispatcher:
    """A dispatcher over the lane queues of `markets` (all configured markets by default)."""
    settings = runtime.settings
    return Dispatcher(
        sqs=runtime.sqs,
        processor=runtime.processor,
        settler=runtime.settler,
        sources=await _sources(runtime, _market_names(runtime.config, markets)),
        concurrency=concurrency or settings.concurrency,
        visibility_timeout=settings.visibility_timeout,
        wait_seconds=settings.wait_seconds,
        grace_seconds=settings.grace_seconds,
        job_seconds=job_seconds,
        metrics=runtime.metrics,
        seller_buffer=settings.seller_buffer,
        pauses=LanePauses(runtime.store.client),
    )


async def _check_redis(runtime: Runtime) -> None:
    """Start-up check: Redis answers (else one line and exit 2, not a worker that waits)."""
    try:
        await runtime.store.client.ping()
    except RedisError as exc:
        where = redact_url(runtime.settings.redis_url)
        raise ConfigError(f"Redis at {where} does not answer: {exc}") from exc


def _check_credentials(settings: WorkerSettings, config: Config, names: list[str]) -> None:
    """Start-up check: each market's credentials are there (else one line and exit 2, not
    every job dead-lettered as permanent). Names where to set them, never a value."""
    for name in names:
        missing = missing_credentials(config, settings, name)
        if missing:
            raise ConfigError(f"market {name} has no credentials: set {', '.join(missing)}")


async def serve(
    settings: WorkerSettings,
    config: Config,
    *,
    markets: Sequence[str] | None = None,
    concurrency: int | None = None,
    job_seconds: float = DEFAULT_JOB_SECONDS,
) -> int:
    """Drain the lane queues of `markets` (all configured by default) until a signal."""
    names = _market_names(config, markets)  # an unknown market fails before anything opens
    _check_credentials(settings, config, names)
    async with Runtime(settings, config) as runtime:
        await _check_redis(runtime)
        dispatcher = await build_dispatcher(
            runtime, markets=markets, concurrency=concurrency, job_seconds=job_seconds
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, dispatcher.stop)
        try:
            async with AsyncExitStack() as stack:
                if settings.metrics_port:
                    server = MetricsServer(
                        runtime.metrics,
                        host=settings.metrics_host,
                        port=settings.metrics_port,
                        health=dispatcher.health,
                    )
                    stack.push_async_callback(server.aclose)
                    try:
                        await server.start()
                    except OSError as exc:
                        raise ConfigError(
                            f"cannot serve metrics on port {settings.metrics_port}: {exc}"
                        ) from exc
                await dispatcher.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    return 0

