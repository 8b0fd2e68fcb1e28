"""worker.outcomes: the explicit table from a job's ending to what happens to its message."""

from __future__ import annotations

import math
import time

import pytest

from lanes.errors import BudgetTimeout, BudgetUnavailable
from lanes.policy import DEFAULT_POLICIES, Lane
from markets import AttemptsExhausted, PermanentError, RateLimited, RetryLater, TransientError
from markets.errors import OutcomeUnknown, QuotaExhausted
from worker.envelope import PoisonMessage
from worker.idempotency import ClaimBusy
from worker.outcomes import MAX_VISIBILITY, Action, Outcome, backoff_seconds, outcome_of_error
from worker.sinks import SinkError, SinkRefused


def _sort(exc: Exception, lane: Lane = Lane.HIGH, received: int = 1) -> Outcome:
    return outcome_of_error(exc, lane=lane, policy=DEFAULT_POLICIES[lane], attempts=received)


@pytest.mark.parametrize("lane", list(Lane))
def test_permanent_and_poison_dead_letter_in_every_lane(lane: Lane) -> None:
    """Rule 7: a permanent error or a malformed message is dead-lettered at once, any lane."""
    permanent = _sort(PermanentError("bad", market="acme", status=400), lane)
    poison = _sort(PoisonMessage("body is not JSON"), lane)
    assert (permanent.action, poison.action) == (Action.DEAD_LETTER, Action.DEAD_LETTER)
    assert permanent.reason.startswith("permanent error: acme: 400: bad")
    assert poison.reason == "poison message: body is not JSON"


@pytest.mark.parametrize(
    "exc",
    [
        RetryLater(7.2, "deadline"),
        BudgetTimeout("acme:orders", 7.2),
        ClaimBusy("k", 7.2),
    ],
)
def test_waiting_releases_with_the_wait_and_never_dead_letters(exc: Exception) -> None:
    """Waiting is not failing: even a low message many receives old is released, not dead."""
    outcome = _sort(exc, Lane.LOW, received=50)
    assert outcome.action is Action.RELEASE
    assert outcome.visibility == 8


def test_low_transient_dead_letters_only_at_max_attempts_spread_over_minutes() -> None:
    """Issue 12 (12): a failed low attempt comes back after minutes of backoff (not
    milliseconds), and only the max_attempts-th attempt (counted by lanes) dead-letters."""
    error = TransientError("503", market="acme", status=503)
    first, second = _sort(error, Lane.LOW, received=1), _sort(error, Lane.LOW, received=2)
    assert (first.action, second.action) == (Action.RELEASE, Action.RELEASE)
    assert 30 <= first.visibility <= 60
    assert 60 <= second.visibility <= 120
    last = _sort(error, Lane.LOW, received=3)
    assert last.action is Action.DEAD_LETTER
    assert last.attempts == 3
    assert last.reason == "low lane gave up after 3 attempts"
    assert _sort(error, Lane.HIGH, received=300).action is Action.RELEASE


def test_attempts_exhausted_is_one_failed_attempt_with_its_last_error() -> None:
    """AttemptsExhausted (one attempt of a delivery) counts like any failed attempt and
    carries the market's last error."""
    exc = AttemptsExhausted(market="acme", endpoint="orders", attempts=1, last_error="HTTP 503")
    assert _sort(exc, Lane.LOW, received=1).action is Action.RELEASE
    outcome = _sort(exc, Lane.LOW, received=3)
    assert (outcome.action, outcome.attempts, outcome.error) == (Action.DEAD_LETTER, 3, "HTTP 503")


def test_unknown_outcome_dead_letters_and_quota_waits_for_its_reset() -> None:
    """OutcomeUnknown dead-letters with reason "outcome unknown" in every lane;
    QuotaExhausted is released until its reset time, spending no attempt."""
    unknown = _sort(OutcomeUnknown("timeout after the POST left", market="acme"), Lane.HIGH)
    assert unknown.action is Action.DEAD_LETTER
    assert unknown.reason.startswith("outcome unknown: ")
    reset = time.time() + 7200
    exhausted = QuotaExhausted(
        market="acme", endpoint="orders", retry_after=math.inf, retry_at=reset, code="QUOTA"
    )
    quota = _sort(exhausted, Lane.LOW, received=5)
    assert (quota.action, quota.label) == (Action.RELEASE, "quota")
    assert 7100 <= quota.visibility <= 7200


def test_redis_down_and_rate_limits_release() -> None:
    """Redis down spends no attempt; a 429 that escaped is transient: both come back later."""
    assert _sort(BudgetUnavailable("down"), Lane.LOW, received=9).action is Action.RELEASE
    assert _sort(RateLimited("429", market="acme"), Lane.MEDIUM).action is Action.RELEASE


def test_sink_refusal_dead_letters_and_sink_failure_releases() -> None:
    """A results backend that refuses (4xx) dead-letters; one that is down releases."""
    assert _sort(SinkRefused("400")).action is Action.DEAD_LETTER
    assert _sort(SinkError("503")).action is Action.RELEASE


def test_unexpected_error_is_released_not_lost() -> None:
    """A bug (any other exception) is handled like a failed attempt, never dropped."""
    assert _sort(KeyError("x"), Lane.HIGH).label == "crashed"
    assert _sort(KeyError("x"), Lane.LOW, received=3).action is Action.DEAD_LETTER


def test_backoff_grows_and_is_capped() -> None:
    """Backoff doubles per receive within [half, full] of its ceiling and stays under 15 min."""
    assert 1.0 <= backoff_seconds(1) <= 2.0
    assert 8.0 <= backoff_seconds(4) <= 16.0
    assert backoff_seconds(40) <= 900.0
    assert Outcome.release("x", 10**9).visibility == MAX_VISIBILITY
