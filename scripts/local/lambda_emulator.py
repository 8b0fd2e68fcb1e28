"""A local SQS event source for the Lambda handler: the Lambda path, run on a laptop.

What AWS Lambda's SQS event source mapping does, on moto (or any SQS endpoint):
one poller per lane queue long-polls it, gathers up to `batch_size` messages
(waiting at most `batching_window` seconds for a fuller batch), and invokes the
handler (`worker.lambda_handler.handler` by default) in a worker process with an
SQS-shaped event (the record fields AWS documents: messageId,
receiptHandle, body, attributes, messageAttributes, eventSourceARN, awsRegion)
and a context that has `get_remaining_time_in_millis`, `aws_request_id` and
`function_name`. With `ReportBatchItemFailures`, the records the handler names in
`batchItemFailures` are left in the queue to come back (their visibility is the
handler's business, else the queue's timeout); the rest are deleted. A handler
that raises, or answers something else, fails the whole batch, as on AWS. Each
source runs at most `max_concurrency` invocations at once (ScalingConfig).

Worker processes are spawned (a fresh interpreter, like a Lambda container) and
kept warm: the handler's connections live across invocations in each of them;
`niceness` lowers their CPU priority (the demo keeps its simulators ahead of them);
`output` is a file (`{pid}` becomes the process id) for what they print.
All of them start, and import the handler, before the first poll: on AWS a cold
start runs on a host of its own, while here a process importing mid-run would take
the CPU of the warm ones as they hold budget, so that their admitted requests reach
the market late, bunched with the next ones (a seller blocked by its market in the demo).
Unlike AWS, an invocation that overruns its timeout is not killed; it is counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import multiprocessing
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from lanes.resource import AsyncResource
from worker.sqs import SqsClient, SqsError, SqsMessage

__all__ = ["EmulatorStats", "EventSource", "InvocationContext", "LambdaEmulator", "sqs_event"]

_log = structlog.get_logger("scripts.local.lambda_emulator")
DEFAULT_HANDLER = "worker.lambda_handler.handler"
_REGION = "us-east-1"
_MAX_RECEIVE = 10  # one ReceiveMessage answers at most 10 messages
_START_SECONDS = 120.0  # for every worker process to start (a slow, shared host)


@dataclass(frozen=True)
class EventSource:
    """One event source mapping: a queue and how its batches are made and run."""

    queue: str
    batch_size: int = 10
    batching_window: float = 0.0  # MaximumBatchingWindowInSeconds
    max_concurrency: int = 2  # ScalingConfig.MaximumConcurrency


@dataclass
class EmulatorStats:
    """Per queue: invocations, records delivered, records failed, invocations that raised
    or overran their timeout, and the most invocations that ran at once."""

    invocations: Counter[str] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    processes: int = 0  # worker processes started before the first poll


class InvocationContext:
    """The part of Lambda's context object the handler uses, made in the worker process."""

    def __init__(self, function_name: str, request_id: str, timeout_ms: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.aws_request_id = request_id
        self.invoked_function_arn = (
            f"arn:aws:lambda:{_REGION}:000000000000:function:{function_name}"
        )
        self.memory_limit_in_mb = 512
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_event(messages: list[SqsMessage], queue_arn: str) -> dict[str, Any]:
    """The event Lambda passes for a batch of SQS messages."""
    region = queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else _REGION
    return {
        "Records": [
            {
                "messageId": message.message_id,
                "receiptHandle": message.receipt_handle,
                "body": message.body,
                "attributes": dict(message.attributes),
                "messageAttributes": {
                    name: {
                        "stringValue": value,
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": "String",
                    }
                    for name, value in message.message_attributes.items()
                },
                "md5OfBody": hashlib.md5(message.body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


# --- in the worker process --------------------------------------------------------------

_handler: Callable[[Mapping[str, Any], InvocationContext], Any] | None = None
_all_started: Any = None  # a multiprocessing Barrier of every worker process


def _start_worker(
    handler_path: str,
    environment: Mapping[str, str],
    niceness: int,
    all_started: Any,
    output: str | None,
) -> None:
    """Worker process set-up: the function's environment, then the handler imported once.
    `{pid}` in a value becomes the process id (e.g. one results file per process)."""
    global _handler, _all_started
    _all_started = all_started
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the emulator decides when workers stop
    if niceness:
        os.nice(niceness)
    pid = str(os.getpid())
    if output is not None:  # what the function prints (logs, metrics lines), as CloudWatch has it
        log = os.open(output.replace("{pid}", pid), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        for stream in (1, 2):
            os.dup2(log, stream)
        os.close(log)
    os.environ.update({key: value.replace("{pid}", pid) for key, value in environment.items()})
    module, _, name = handler_path.rpartition(".")
    _handler = getattr(importlib.import_module(module), name)


def _started() -> int:
    """Returns once every worker process got here: each takes exactly one of these tasks."""
    _all_started.wait(timeout=_START_SECONDS)
    return os.getpid()


def _invoke(event: dict[str, Any], function_name: str, request_id: str, timeout_ms: int) -> Any:
    if _handler is None:
        raise RuntimeError("worker process was not started with _start_worker")
    return _handler(event, InvocationContext(function_name, request_id, timeout_ms))


# --- in the emulator ----------------------------------------------------------------------


def _failed_ids(answer: Any, batch: list[SqsMessage]) -> set[str] | None:
    """The message ids the handler reported as failed; None when the answer is not a valid
    partial-batch response (then Lambda fails the whole batch)."""
    if answer is None:
        return set()
    if not isinstance(answer, Mapping):
        return None
    failures = answer.get("batchItemFailures", [])
    if not isinstance(failures, list):
        return None
    known = {message.message_id for message in batch}
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if identifier not in known:
            return None
        failed.add(identifier)
    return failed


class LambdaEmulator(AsyncResource):
    """Runs the event sources until `stop()`; `aclose()` waits for running invocations and
    ends the worker processes."""

    def __init__(
        self,
        sqs: SqsClient,
        sources: list[EventSource],
        *,
        environment: Mapping[str, str],
        timeout_seconds: float = 30.0,
        processes: int | None = None,
        function_name: str = "lanes-worker",
        handler: str = DEFAULT_HANDLER,
        wait_seconds: int = 1,
        niceness: int = 0,
        output: str | None = None,
    ) -> None:
        self._sqs = sqs
        self._sources = sources
        self._timeout_ms = int(timeout_seconds * 1000)
        self._function_name = function_name
        self._wait_seconds = wait_seconds
        self._stopping = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self.stats = EmulatorStats()
        self._size = max(1, processes or sum(source.max_concurrency for source in sources))
        spawn = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            max_workers=self._size,
            mp_context=spawn,
            initializer=_start_worker,
            initargs=(handler, dict(environment), niceness, spawn.Barrier(self._size), output),
        )

    def stop(self) -> None:
        """Stop polling; invocations already running finish."""
        self._stopping.set()

    async def run(self) -> None:
        """Start every worker process, poll every source until `stop()`, then wait for the
        running invocations."""
        await self._start_processes()
        try:
            async with asyncio.TaskGroup() as pollers:  # one failing poller stops them all
                for source in self._sources:
                    pollers.create_task(self._poll(source))
        finally:
            if self._running:
                await asyncio.wait(self._running)

    async def _start_processes(self) -> None:
        """One task per process at once: the pool spawns a process for each task submitted
        while none is idle, and each runs the initializer (the handler's import) first."""
        loop = asyncio.get_running_loop()
        pids = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _started) for _ in range(self._size))
        )
        self.stats.processes = len(set(pids))

    async def _poll(self, source: EventSource) -> None:
        url = await self._sqs.queue_url(source.queue)
        arn = await self._sqs.queue_arn(source.queue)
        slots = asyncio.Semaphore(source.max_concurrency)
        running: set[asyncio.Task[None]] = set()
        while not self._stopping.is_set():
            await slots.acquire()
            try:
                batch = await self._gather(url, source)
            except SqsError as exc:
                slots.release()
                _log.warning("emulator.receive_failed", queue=source.queue, error=str(exc))
                await asyncio.sleep(1.0)
                continue
            except BaseException:
                slots.release()
                raise
            if not batch:
                slots.release()
                continue
            task = asyncio.create_task(self._invoke(source, url, arn, batch))
            for tracked in (self._running, running):
                tracked.add(task)
                task.add_done_callback(tracked.discard)
            task.add_done_callback(lambda _task: slots.release())
            peak = self.stats.peak
            peak[source.queue] = max(peak[source.queue], len(running))

    async def _gather(self, url: str, source: EventSource) -> list[SqsMessage]:
        """A batch: the first long poll, then more until full or the window is over."""
        wanted = source.batch_size
        batch = await self._sqs.receive(
            url, max_messages=min(_MAX_RECEIVE, wanted), wait_seconds=self._wait_seconds
        )
        window_ends = time.monotonic() + source.batching_window
        while batch and len(batch) < wanted and not self._stopping.is_set():
            left = window_ends - time.monotonic()
            if left <= 0:
                break
            more = await self._sqs.receive(
                url,
                max_messages=min(_MAX_RECEIVE, wanted - len(batch)),
                wait_seconds=min(self._wait_seconds, max(0, int(left))),
            )
            if not more:
                await asyncio.sleep(min(left, 0.2))
            batch.extend(more)
        return batch

    async def _invoke(
        self, source: EventSource, url: str, arn: str, batch: list[SqsMessage]
    ) -> None:
        queue = source.queue
        self.stats.invocations[queue] += 1
        self.stats.records[queue] += len(batch)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self._pool,
            _invoke,
            sqs_event(batch, arn),
            self._function_name,
            str(uuid.uuid4()),
            self._timeout_ms,
        )
        failed: set[str] | None
        try:
            failed = _failed_ids(await call, batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the handler raised fails the batch
            _log.error("emulator.handler_raised", queue=queue, error=repr(exc))
            self.stats.errors[queue] += 1
            failed = None
        if time.monotonic() - started > self._timeout_ms / 1000:
            self.stats.timeouts[queue] += 1
        if failed is None:  # raised, or not a partial-batch answer: the whole batch comes back
            failed = {message.message_id for message in batch}
        self.stats.failures[queue] += len(failed)
        done = [message.receipt_handle for message in batch if message.message_id not in failed]
        if done:
            try:
                await self._sqs.delete_batch(url, done)
            except SqsError as exc:  # not deleted: they come back, as on AWS
                _log.warning("emulator.delete_failed", queue=queue, error=str(exc))

    async def _close(self) -> None:
        self.stop()
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
