"""What happens when a job ends: the one table from error to outcome, and carrying it out.

Both the daemon and the Lambda handler end every message here
(docs/DESIGN.md rules 6, 7, 11 and 12). `outcome_of_error` sorts an error by
the table `ERRORS` (first matching row wins; a row names an error class, or
its name for classes defined elsewhere that may not exist yet), and
`Settler.settle` carries the outcome out on SQS:

| sort      | what happened                                | action                           |
|-----------|----------------------------------------------|----------------------------------|
| done      | success, or a duplicate already done         | delete                           |
| permanent | poison body, 4xx, unknown kind, sink refused | dead-letter at once, any lane    |
| unknown   | a side effect that may or may not have landed| dead-letter for a person         |
| wait      | budget, cooldown, Redis, claim, sink, quota  | release after it; no attempt     |
| transient | 5xx, timeout, connection, a bug              | backoff; low dead-letters past N |

Dead-lettering writes to the lane's dead-letter queue first, with the reason
as message attributes; only a confirmed send lets the original go.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from lanes.errors import BudgetTimeout, BudgetUnavailable
from lanes.logs import redact_url
from lanes.policy import Lane, LanePolicy
from markets.errors import (
    AttemptsExhausted,
    OutcomeUnknown,
    PermanentError,
    QuotaExhausted,
    RetryLater,
    TransientError,
)
from worker.envelope import PoisonMessage
from worker.idempotency import ClaimBusy, ClaimLost
from worker.metrics import Metrics
from worker.queues import (
    ATTR_ATTEMPTS,
    ATTR_ERROR,
    ATTR_FAILED_AT,
    ATTR_FIRST_ATTEMPT_AT,
    ATTR_REASON,
    Delivery,
)
from worker.sinks import SinkError, SinkRefused
from worker.sqs import Coalescer, OutgoingMessage, SqsClient, SqsError
from worker.tracking import JobTracker

__all__ = [
    "ATTEMPT_BACKOFF",
    "ERRORS",
    "FREE_RELEASES",
    "MAX_VISIBILITY",
    "Action",
    "Outcome",
    "Rule",
    "Settler",
    "Sort",
    "backoff_seconds",
    "dead_letter_message",
    "exhausted",
    "outcome_of_error",
]

MAX_VISIBILITY = 43_200  # SQS's ceiling: 12 hours
_BACKOFF_BASE = 2.0
_BACKOFF_CAP = 900.0
# A lane with max_attempts spreads its attempts over minutes (docs/DESIGN.md rule 12):
# 30-60 s after the first failure, 60-120 s after the second, ...
ATTEMPT_BACKOFF = 60.0
_MAX_ATTRIBUTES = 10
_MAX_ATTRIBUTE_TEXT = 1000
# A dead letter that could not be sent stays in its queue and is tried again this much later.
_DEAD_LETTER_RETRY = 60
_log = structlog.get_logger("worker.outcomes")


class Action(StrEnum):
    DELETE = "delete"
    RELEASE = "release"
    DEAD_LETTER = "dead_letter"


class Sort(StrEnum):
    """How an error is handled (the table's middle column)."""

    PERMANENT = "permanent"
    UNKNOWN = "unknown"
    WAIT = "wait"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: errors of class `error` end as `label`, by `sort`."""

    error: type[BaseException]
    label: str
    sort: Sort
    reason: str = ""

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.error)


# Order matters: the first matching row wins (OutcomeUnknown is a PermanentError,
# QuotaExhausted a RetryLater, SinkRefused a SinkError). Anything unmatched is a bug,
# handled as transient.
ERRORS: tuple[Rule, ...] = (
    Rule(PoisonMessage, "poison", Sort.PERMANENT, "poison message"),
    Rule(OutcomeUnknown, "outcome_unknown", Sort.UNKNOWN, "outcome unknown"),
    Rule(PermanentError, "permanent", Sort.PERMANENT, "permanent error"),
    Rule(SinkRefused, "sink_refused", Sort.PERMANENT, "results sink refused"),
    Rule(QuotaExhausted, "quota", Sort.WAIT),
    Rule(ClaimBusy, "claim_busy", Sort.WAIT),
    Rule(ClaimLost, "claim_lost", Sort.WAIT),
    Rule(RetryLater, "retry_later", Sort.WAIT),
    Rule(BudgetTimeout, "retry_later", Sort.WAIT),
    Rule(BudgetUnavailable, "redis_unavailable", Sort.WAIT),
    Rule(SinkError, "sink_unavailable", Sort.WAIT),
    Rule(TransientError, "transient", Sort.TRANSIENT),
)
_UNMATCHED = Rule(Exception, "crashed", Sort.TRANSIENT)
# Releases that spent no attempt: every wait, a release at shutdown or when Lambda's time is up.
FREE_RELEASES = frozenset(
    {rule.label for rule in ERRORS if rule.sort is Sort.WAIT} | {"shutdown", "out_of_time"}
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a message, and why (`label` is the log's `outcome`)."""

    action: Action
    label: str
    reason: str = ""
    error: str = ""
    attempts: int = 0
    visibility: int = 0
    # Filled in by the processor once the body was read: for status records and metrics.
    job_id: str | None = None
    kind: str = ""
    seller: str = ""
    result: dict[str, Any] | None = None

    @classmethod
    def done(cls, label: str = "done") -> Outcome:
        return cls(Action.DELETE, label)

    @classmethod
    def dead_letter(cls, label: str, reason: str, *, error: str = "", attempts: int) -> Outcome:
        return cls(
            Action.DEAD_LETTER, label, reason=reason, error=error or reason, attempts=attempts
        )

    @classmethod
    def release(cls, label: str, seconds: float, *, error: str = "", attempts: int = 0) -> Outcome:
        visibility = max(0, min(MAX_VISIBILITY, math.ceil(seconds)))
        return cls(Action.RELEASE, label, error=error, attempts=attempts, visibility=visibility)


def backoff_seconds(attempts: int, base: float = _BACKOFF_BASE) -> float:
    """Exponential with full jitter on the upper half: `base` x 1, 2, 4 ..., capped at 15 min."""
    ceiling = min(_BACKOFF_CAP, base * 2 ** max(0, attempts - 1))
    jittered: float = ceiling / 2 + random.uniform(0, ceiling / 2)
    return jittered


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def rule_of(exc: BaseException) -> Rule:
    """The table row for `exc` (a bug's row when none matches)."""
    return next((rule for rule in ERRORS if rule.matches(exc)), _UNMATCHED)


def _wait_of(exc: BaseException) -> float:
    """How long a waiting error asks to wait: `retry_after` seconds, else until `retry_at`
    (a Unix time in seconds)."""
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and math.isfinite(retry_after):
        return max(0.0, float(retry_after))
    retry_at = getattr(exc, "retry_at", None)
    if isinstance(retry_at, int | float) and math.isfinite(retry_at):
        return max(0.0, retry_at - time.time())
    return backoff_seconds(1)


def exhausted(lane: Lane, attempts: int, *, error: str = "") -> Outcome:
    """A job of a lane with `max_attempts` that spent them all (rule 7): a dead letter. The
    one place its reason is written, whether the last attempt failed or a crash spent it."""
    return Outcome.dead_letter(
        "exhausted",
        f"{lane.value} lane gave up after {attempts} attempts",
        error=error,
        attempts=attempts,
    )


def outcome_of_error(
    exc: BaseException,
    *,
    lane: Lane,
    policy: LanePolicy,
    attempts: int,
    retry_backoff: float = ATTEMPT_BACKOFF,
) -> Outcome:
    """Sort a job's error by the table `ERRORS`; `attempts` is what the message has spent
    (counted by lanes for a lane with max_attempts, else its receives). A lane with
    max_attempts waits `retry_backoff` x 1, 2, 4 ... s between attempts."""
    rule = rule_of(exc)
    text = _one_line(exc)
    if rule.sort is Sort.PERMANENT or rule.sort is Sort.UNKNOWN:
        detail = exc.reason if isinstance(exc, PoisonMessage) else text
        spent = 0 if isinstance(exc, PoisonMessage) else attempts
        return Outcome.dead_letter(rule.label, f"{rule.reason}: {detail}", attempts=spent)
    if rule.sort is Sort.WAIT:
        # Waiting is not failing: the message comes back when the wait is over.
        return Outcome.release(rule.label, _wait_of(exc), error=text)
    error = exc.last_error if isinstance(exc, AttemptsExhausted) else text
    limit = policy.max_attempts
    if limit is None:
        return Outcome.release(
            rule.label, backoff_seconds(attempts), error=error, attempts=attempts
        )
    if attempts >= limit:
        return exhausted(lane, attempts, error=error)
    return Outcome.release(
        rule.label, backoff_seconds(attempts, retry_backoff), error=error, attempts=attempts
    )


# -- carrying an outcome out ---------------------------------------------------------------


def _clip(text: str) -> str:
    """One line, no credentials (docs/DESIGN.md rule 8), within SQS's attribute room."""
    one_line = redact_url(" ".join(text.split()))
    return one_line[:_MAX_ATTRIBUTE_TEXT]


def dead_letter_message(delivery: Delivery, outcome: Outcome) -> OutgoingMessage:
    """The original body and attributes plus why, how often and when it failed."""
    ours = {
        ATTR_REASON: _clip(outcome.reason) or outcome.label,
        ATTR_ATTEMPTS: str(outcome.attempts),
        ATTR_ERROR: _clip(outcome.error or outcome.reason) or outcome.label,
        ATTR_FAILED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    first = delivery.message.attributes.get("ApproximateFirstReceiveTimestamp", "")
    if first.isdigit():
        at = datetime.fromtimestamp(int(first) / 1000, tz=UTC)
        ours[ATTR_FIRST_ATTEMPT_AT] = at.isoformat(timespec="seconds")
    # SQS allows 10 message attributes: ours win, the producer's keep what room is left.
    theirs = {
        name: value
        for name, value in sorted(delivery.message.message_attributes.items())
        if name not in ours
    }
    kept = dict(list(theirs.items())[: _MAX_ATTRIBUTES - len(ours)])
    return OutgoingMessage(body=delivery.message.body, attributes={**kept, **ours})


def _receipt(item: tuple[str, int]) -> str:
    return item[0]


def _same(receipt: str) -> str:
    return receipt


class Settler:
    """Carries outcomes out on SQS; the SQS client is borrowed, not owned.

    `deletes_done=False` is the Lambda event source's way: it deletes the records
    the handler reports done, so `settle` only dead-letters and releases.
    """

    def __init__(
        self,
        sqs: SqsClient,
        *,
        linger: float = 0.05,
        deletes_done: bool = True,
        tracker: JobTracker | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._sqs = sqs
        self._deletes_done = deletes_done
        self._tracker = tracker
        self._metrics = metrics
        self._deletes: Coalescer[str] = Coalescer(sqs.delete_batch, _same, linger)
        self._visibility: Coalescer[tuple[str, int]] = Coalescer(
            sqs.change_visibility_batch, _receipt, linger
        )
        self.counts: dict[str, int] = {}

    async def settle(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Carry out `outcome`; True when the message is finished with (done or dead-lettered).

        A dead letter is deleted only after the dead-letter queue has it; one that
        could not be sent stays in its queue and comes back later.
        """
        self.counts[outcome.label] = self.counts.get(outcome.label, 0) + 1
        if self._metrics is not None:
            free = outcome.label in FREE_RELEASES
            self._metrics.settled(delivery.queue, outcome.action.value, outcome.label, free=free)
        finished = await self._carry_out(delivery, outcome)
        if self._tracker is not None and outcome.job_id is not None:
            await self._track(self._tracker, delivery, outcome, finished)
        return finished

    async def _carry_out(self, delivery: Delivery, outcome: Outcome) -> bool:
        if outcome.action is Action.RELEASE:
            await self.release(delivery, outcome.visibility)
            return False
        if outcome.action is Action.DEAD_LETTER and not await self.dead_letter(delivery, outcome):
            await self.release(delivery, _DEAD_LETTER_RETRY)
            return False
        if self._deletes_done:
            await self.delete(delivery)
        return True

    @staticmethod
    async def _track(
        tracker: JobTracker, delivery: Delivery, outcome: Outcome, finished: bool
    ) -> None:
        assert outcome.job_id is not None
        fields: dict[str, Any] = {
            "market": delivery.queue.market,
            "lane": delivery.queue.lane.value,
            "kind": outcome.kind,
            "seller": outcome.seller,
            "message_id": delivery.message.message_id,
            "attempts": outcome.attempts,
        }
        if outcome.action is Action.DELETE:
            # The job's answer as the API's own collections give it: the market data.
            done = outcome.result or {}
            await tracker.update(
                outcome.job_id, "done", **fields, result=done.get("data"), calls=done.get("calls")
            )
        elif outcome.action is Action.DEAD_LETTER and finished:
            reason, error = redact_url(outcome.reason), redact_url(outcome.error)
            await tracker.update(
                outcome.job_id, "dead_lettered", **fields, reason=reason, error=error
            )
        elif outcome.label in FREE_RELEASES:
            await tracker.update(outcome.job_id, "queued", **fields, waiting=outcome.label)
        else:
            await tracker.update(
                outcome.job_id,
                "failed",
                **fields,
                error=redact_url(outcome.error),
                retry_in=outcome.visibility,
            )

    async def delete(self, delivery: Delivery) -> bool:
        """Delete; False (logged) when SQS no longer knows the receipt or the call failed."""
        try:
            if await self._deletes.submit(delivery.url, delivery.receipt):
                return True
            _log.warning("delete failed: receipt expired, the message may run again")
        except SqsError as exc:
            _log.warning("delete failed, the message may run again", error=str(exc))
        return False

    async def release(self, delivery: Delivery, seconds: int) -> bool:
        """Make the message visible again in `seconds` (0 = now); False (logged) on failure."""
        try:
            if await self._visibility.submit(delivery.url, (delivery.receipt, seconds)):
                return True
            _log.warning("release failed: receipt expired, the message returns on its own")
        except SqsError as exc:
            _log.warning("release failed, the message returns on its own", error=str(exc))
        return False

    async def extend(self, url: str, items: Sequence[tuple[str, int]]) -> list[str]:
        """Extend many messages' visibility at once (the heartbeat); returns failed receipts."""
        return await self._sqs.change_visibility_batch(url, items)

    async def dead_letter(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Send the message to its lane's dead-letter queue; True only once SQS accepted it."""
        try:
            url = await self._sqs.queue_url(delivery.queue.dead_letter)
            await self._sqs.send_batch(url, [dead_letter_message(delivery, outcome)])
        except SqsError as exc:
            _log.error("dead-letter send failed, the message stays in its queue", error=str(exc))
            return False
        return True

    async def drain(self) -> None:
        """Flush pending deletes and releases (at shutdown)."""
        await self._deletes.drain()
        await self._visibility.drain()
