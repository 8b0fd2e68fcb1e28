"""The SQS lane daemon, its Lambda handler, and how a message's job ends.

Where things live:

| module            | owns |
|-------------------|------|
| `daemon`          | the long-running worker: pollers, pick, slots, shutdown, entry point |
| `lambda_handler`  | the same processing as an AWS Lambda on an SQS event source |
| `runtime`         | every connection a worker process holds (Redis, SQS, markets, sink) |
| `envelope`        | the message body and the job prepared from it (no I/O) |
| `processing`      | running a prepared job: attempts, idempotency, market, result |
| `outcomes`        | what happens when a job ends or fails: error table, delete, release, DLQ |
| `idempotency`     | side-effect claims: claimed, posting, done (at most once per id) |
| `tracking`        | per-job status records and attempt counts in Redis |
| `metrics`         | Prometheus series, `/metrics` and `/healthz`, EMF lines for Lambda |
| `heartbeat`       | keeping held messages invisible |
| `queues`          | queue names, a received message with its queue, dead-letter attributes |
| `sqs`             | the SQS client and batching |
| `sinks`           | where results go |
"""

from __future__ import annotations

from worker.daemon import DEFAULT_JOB_SECONDS, Dispatcher, LaneSource, build_dispatcher, serve
from worker.envelope import Envelope, PoisonMessage, PreparedJob, parse_envelope, prepare
from worker.outcomes import ERRORS, Action, Outcome, Settler, outcome_of_error
from worker.processing import JobProcessor
from worker.queues import ATTR_REASON, Delivery, QueueName, lane_of_queue
from worker.runtime import Runtime
from worker.sinks import SinkError, open_sink
from worker.sqs import OutgoingMessage, QueueMissing, SqsClient, SqsError, SqsMessage

__all__ = [
    "ATTR_REASON",
    "DEFAULT_JOB_SECONDS",
    "ERRORS",
    "Action",
    "Delivery",
    "Dispatcher",
    "Envelope",
    "JobProcessor",
    "LaneSource",
    "Outcome",
    "OutgoingMessage",
    "PoisonMessage",
    "PreparedJob",
    "QueueMissing",
    "QueueName",
    "Runtime",
    "Settler",
    "SinkError",
    "SqsClient",
    "SqsError",
    "SqsMessage",
    "build_dispatcher",
    "lane_of_queue",
    "open_sink",
    "outcome_of_error",
    "parse_envelope",
    "prepare",
    "serve",
]
