"""The SQS lane dispatcher, its Lambda handler and result sinks."""

from __future__ import annotations

from worker.delivery import Delivery
from worker.dispatcher import DEFAULT_JOB_SECONDS, Dispatcher, LaneSource
from worker.envelope import Envelope, PoisonMessage, parse_envelope
from worker.heartbeat import Heartbeat
from worker.idempotency import Claim, ClaimBusy, IdempotencyGuard
from worker.ledger import ReleaseLedger
from worker.outcomes import Action, Outcome, backoff_seconds, outcome_of_error
from worker.processing import JobProcessor, result_record
from worker.queues import (
    ATTR_ATTEMPTS,
    ATTR_ERROR,
    ATTR_FAILED_AT,
    ATTR_REASON,
    DLQ_SUFFIX,
    QueueName,
    lane_of_queue,
)
from worker.runner import EXIT_OK, EXIT_STARTUP, build_dispatcher, run_worker
from worker.runtime import Runtime
from worker.settle import Settler, dead_letter_message
from worker.sinks import FileSink, HttpSink, ResultSink, SinkError, SqsSink, open_sink
from worker.sqs import OutgoingMessage, QueueMissing, SqsClient, SqsError, SqsMessage

__all__ = [
    "ATTR_ATTEMPTS",
    "ATTR_ERROR",
    "ATTR_FAILED_AT",
    "ATTR_REASON",
    "DEFAULT_JOB_SECONDS",
    "DLQ_SUFFIX",
    "EXIT_OK",
    "EXIT_STARTUP",
    "Action",
    "Claim",
    "ClaimBusy",
    "Delivery",
    "Dispatcher",
    "Envelope",
    "FileSink",
    "Heartbeat",
    "HttpSink",
    "IdempotencyGuard",
    "JobProcessor",
    "LaneSource",
    "Outcome",
    "OutgoingMessage",
    "PoisonMessage",
    "QueueMissing",
    "QueueName",
    "ReleaseLedger",
    "ResultSink",
    "Runtime",
    "Settler",
    "SinkError",
    "SqsClient",
    "SqsError",
    "SqsMessage",
    "SqsSink",
    "backoff_seconds",
    "build_dispatcher",
    "dead_letter_message",
    "lane_of_queue",
    "open_sink",
    "outcome_of_error",
    "parse_envelope",
    "result_record",
    "run_worker",
]
