"""How a message's job ended, sorted explicitly into what happens to the message.

One table for the daemon and the Lambda handler (docs/DESIGN.md rules 6 and 7):

| what happened                         | action      |
|---------------------------------------|-------------|
| success, or a duplicate already done  | delete      |
| poison body, permanent market error   | dead-letter |
| low lane out of attempts / receives   | dead-letter |
| RetryLater, Redis down, claim busy    | release (visibility = retry_after) |
| results sink refused it (HTTP 4xx)    | dead-letter; failed to store (5xx) releases |
| transient error the process gave up on| release (backoff); low dead-letters past max_attempts |
| an unexpected error (a bug)           | like a transient error, logged with its traceback |
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from lanes.errors import BudgetTimeout, BudgetUnavailable
from lanes.policy import Lane, LanePolicy
from markets.errors import AttemptsExhausted, PermanentError, RetryLater, TransientError
from worker.envelope import PoisonMessage
from worker.idempotency import ClaimBusy
from worker.sinks import SinkError

__all__ = [
    "FREE_RELEASES",
    "MAX_VISIBILITY",
    "Action",
    "Outcome",
    "backoff_seconds",
    "outcome_of_error",
]

MAX_VISIBILITY = 43_200  # SQS's ceiling: 12 hours
_BACKOFF_BASE = 2.0
_BACKOFF_CAP = 900.0
# Releases that spent no attempt: a wait for budget or a claim, Redis down, a shutdown.
FREE_RELEASES = frozenset({"retry_later", "claim_busy", "redis_unavailable", "shutdown"})


class Action(StrEnum):
    DELETE = "delete"
    RELEASE = "release"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a message, and why (`label` is the log's `outcome`)."""

    action: Action
    label: str
    reason: str = ""
    error: str = ""
    attempts: int = 0
    visibility: int = 0

    @classmethod
    def done(cls, label: str = "done") -> Outcome:
        return cls(Action.DELETE, label)

    @classmethod
    def dead_letter(cls, label: str, reason: str, *, error: str = "", attempts: int) -> Outcome:
        return cls(
            Action.DEAD_LETTER, label, reason=reason, error=error or reason, attempts=attempts
        )

    @classmethod
    def release(cls, label: str, seconds: float, *, error: str = "") -> Outcome:
        visibility = max(0, min(MAX_VISIBILITY, math.ceil(seconds)))
        return cls(Action.RELEASE, label, error=error, visibility=visibility)


def backoff_seconds(receive_count: int) -> float:
    """Exponential with full jitter on the upper half: 2, 4, 8 ... s, capped at 15 minutes."""
    ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** max(0, receive_count - 1))
    jittered: float = ceiling / 2 + random.uniform(0, ceiling / 2)
    return jittered


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def outcome_of_error(
    exc: Exception, *, lane: Lane, policy: LanePolicy, receive_count: int
) -> Outcome:
    """Sort a job's error; order matters (AttemptsExhausted is a TransientError)."""
    text = _one_line(exc)
    if isinstance(exc, PoisonMessage):
        return Outcome.dead_letter("poison", f"poison message: {exc.reason}", attempts=0)
    if isinstance(exc, PermanentError):
        return Outcome.dead_letter("permanent", f"permanent error: {text}", attempts=receive_count)
    if isinstance(exc, AttemptsExhausted):
        return Outcome.dead_letter(
            "exhausted",
            f"{lane.value} lane gave up after {exc.attempts} attempts",
            error=exc.last_error,
            attempts=exc.attempts,
        )
    if isinstance(exc, SinkError) and exc.permanent:
        return Outcome.dead_letter(
            "sink_refused", f"results sink refused: {text}", attempts=receive_count
        )
    if isinstance(exc, ClaimBusy):
        return Outcome.release("claim_busy", exc.retry_after, error=text)
    if isinstance(exc, RetryLater | BudgetTimeout):
        # Waiting is not failing: the message comes back when the wait is over.
        return Outcome.release("retry_later", exc.retry_after, error=text)
    if isinstance(exc, BudgetUnavailable):
        # Redis is down: no call was made, so no attempt was spent.
        return Outcome.release("redis_unavailable", backoff_seconds(1), error=text)
    label = "transient" if isinstance(exc, TransientError) else "crashed"
    limit = policy.max_attempts
    if lane is Lane.LOW and limit is not None and receive_count >= limit:
        return Outcome.dead_letter(
            "exhausted",
            f"{lane.value} lane gave up after {receive_count} receives",
            error=text,
            attempts=receive_count,
        )
    return Outcome.release(label, backoff_seconds(receive_count), error=text)
