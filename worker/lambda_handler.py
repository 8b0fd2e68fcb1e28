"""The same job processing as the daemon, as an AWS Lambda on an SQS event source.

Set `ReportBatchItemFailures` on the event source: the handler returns
`{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}` and only those
records come back. Outcomes map onto that:

| outcome     | in Lambda |
|-------------|-----------|
| delete      | success (Lambda deletes the record) |
| dead-letter | sent to the lane's dead-letter queue, then success; failure if the send failed |
| release     | visibility set to the backoff (best effort), then failure |
| unfinished  | released with visibility 0, failure: records still running when time is nearly up |

Connections and the event loop live across warm invocations. After each batch
the handler prints the batch's metrics as CloudWatch Embedded Metric Format
lines (`worker.metrics`); log lines carry Powertools' `function_request_id`,
`cold_start` and `xray_trace_id`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from lanes.logs import configure_logging
from lanes.settings import load_settings
from markets import load_config
from markets.config import Config
from worker.outcomes import Outcome
from worker.queues import Delivery, lane_of_queue
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.sqs import SqsError, SqsMessage

__all__ = ["LambdaContext", "LambdaWorker", "close", "handle_batch", "handler"]

_log = structlog.get_logger("worker.lambda")
# Time kept back from the invocation's end: settling, returning, and a margin for the runtime.
_SAFETY_FRACTION = 0.1
_SAFETY_MIN = 1.0
_SAFETY_MAX = 5.0
_SETTLE_SECONDS = 0.5


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def _message(record: Mapping[str, Any]) -> SqsMessage:
    attributes = record.get("messageAttributes") or {}
    return SqsMessage(
        message_id=record["messageId"],
        receipt_handle=record["receiptHandle"],
        body=record["body"],
        attributes={str(k): str(v) for k, v in (record.get("attributes") or {}).items()},
        message_attributes={
            name: value["stringValue"]
            for name, value in attributes.items()
            if isinstance(value, Mapping) and value.get("stringValue") is not None
        },
    )


async def _delivery(runtime: Runtime, record: Mapping[str, Any]) -> Delivery:
    """The record as a delivery; ValueError/KeyError for a record that is not a lane's."""
    queue = lane_of_queue(
        record["eventSourceARN"],
        prefix=runtime.settings.queue_prefix,
        markets=runtime.config.markets,
    )
    url = await runtime.sqs.queue_url(queue.queue)
    return Delivery(message=_message(record), queue=queue, url=url)


async def handle_batch(
    runtime: Runtime, event: Mapping[str, Any], remaining_ms: Callable[[], int]
) -> dict[str, list[dict[str, str]]]:
    """Process an SQS event's records concurrently; the records to redeliver as failures."""
    started = time.monotonic()
    remaining = remaining_ms() / 1000
    safety = min(_SAFETY_MAX, max(_SAFETY_MIN, remaining * _SAFETY_FRACTION))
    hard_deadline = started + remaining - safety
    job_deadline = hard_deadline - _SETTLE_SECONDS
    records = list(event.get("Records") or [])
    failed: list[str] = []
    slots = asyncio.Semaphore(runtime.settings.concurrency)

    async def one(record: Mapping[str, Any]) -> bool:
        async with slots:
            try:
                delivery = await _delivery(runtime, record)
            except (KeyError, ValueError, SqsError) as exc:
                # Not a lane record (or its queue is unknown): let Lambda's redrive decide.
                _log.error("lambda.bad_record", error=str(exc), message_id=record.get("messageId"))
                return False
            try:
                outcome = await runtime.processor.process(delivery, deadline=job_deadline)
                return await runtime.settler.settle(delivery, outcome)
            except asyncio.CancelledError:
                # Out of time: back at once, not after the queue's (long) visibility timeout.
                await runtime.settler.settle(delivery, Outcome.release("out_of_time", 0))
                raise

    tasks = {asyncio.create_task(one(record)): record for record in records}
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, hard_deadline - time.monotonic()))
    for task, record in tasks.items():
        if not task.done():
            task.cancel()
            failed.append(record["messageId"])
        elif task.cancelled() or task.exception() is not None or not task.result():
            if not task.cancelled() and task.exception() is not None:
                _log.error("lambda.record_crashed", error=repr(task.exception()))
            failed.append(record["messageId"])
    unfinished = [task for task in tasks if not task.done()]
    if unfinished:
        _log.warning("lambda.out_of_time", unfinished=len(unfinished))
        await asyncio.wait(unfinished, timeout=_SETTLE_SECONDS)
    await runtime.settler.drain()
    # Status writes of records cancelled out of time: sent before the container may freeze.
    await runtime.tracker.flush()
    for line in runtime.metrics.emf_lines():
        print(line, flush=True)  # CloudWatch Embedded Metric Format: one JSON line each
    _log.info(
        "lambda.batch_done",
        records=len(records),
        failed=len(failed),
        seconds=round(time.monotonic() - started, 3),
    )
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


async def _open_runtime(settings: WorkerSettings, config: Config) -> Runtime:
    """The runtime, made inside the loop that will use it (its HTTP session binds to it)."""
    return await Runtime(settings, config, lambda_mode=True).open()


class LambdaWorker:
    """One event loop and one `Runtime`, kept for the life of the Lambda container."""

    def __init__(self, settings: WorkerSettings) -> None:
        configure_logging(settings.log_level)
        self.loop = asyncio.new_event_loop()
        config = load_config(settings.config)
        self.runtime = self.loop.run_until_complete(_open_runtime(settings, config))
        self._cold = True

    def handle(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        # Powertools' log keys, so Logs Insights queries work as users know them.
        keys = {
            "function_request_id": getattr(context, "aws_request_id", None),
            "cold_start": self._cold,
            "xray_trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        }
        self._cold = False
        with structlog.contextvars.bound_contextvars(**keys):
            return self.loop.run_until_complete(
                handle_batch(self.runtime, event, context.get_remaining_time_in_millis)
            )

    def close(self) -> None:
        self.loop.run_until_complete(self.runtime.aclose())
        self.loop.close()


_worker: LambdaWorker | None = None


def handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The Lambda entry point (`worker.lambda_handler.handler`); settings from `LANES_*`."""
    global _worker
    if _worker is None:
        _worker = LambdaWorker(load_settings(WorkerSettings))
    return _worker.handle(event, context)


def close() -> None:
    """Close the cached worker (tests; a Lambda container just ends)."""
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None
