"""The lanes' retry policy (tenacity): how often and how long a transient failure is retried.

High and medium retry until success; low stops after `max_attempts`. Backoff
is exponential with full jitter and a cap. A 429 adds no backoff of its own:
it already cooled the budget, and the next attempt's budget wait sleeps it out.
Near the deadline the caller gets `RetryLater` instead of a failure.
Permanent errors and `RetryLater` pass straight through.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from markets.errors import AttemptsExhausted, RateLimited, RetryLater, TransientError

__all__ = ["Backoff", "retry_in_lane"]

T = TypeVar("T")
log = structlog.get_logger("markets.retry")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pause before attempt n+1: random in [0, min(cap, initial x 2^n)] seconds."""

    initial: float = 0.25
    cap: float = 20.0


def _failure(state: RetryCallState) -> BaseException:
    assert state.outcome is not None  # tenacity sets it before wait/stop/callbacks
    error = state.outcome.exception()
    assert error is not None
    return error


async def retry_in_lane(
    attempt: Callable[[], Awaitable[T]],
    *,
    max_attempts: int | None,
    deadline: float | None,
    backoff: Backoff,
    context: dict[str, Any],
) -> T:
    """Run `attempt` until it succeeds, fails for good, runs out of attempts or of time."""
    exponential = wait_random_exponential(multiplier=backoff.initial, max=backoff.cap)
    failures: list[str] = []

    async def attempt_noting_failures() -> T:
        try:
            return await attempt()
        except RetryLater as exc:
            if not failures:
                raise
            # Out of time while waiting for budget between retries: say what failed.
            raise RetryLater(exc.retry_after, f"{exc.reason}; last error: {failures[-1]}") from exc

    def pause(state: RetryCallState) -> float:
        return 0.0 if isinstance(_failure(state), RateLimited) else exponential(state)

    def stop(state: RetryCallState) -> bool:
        if max_attempts is not None and state.attempt_number >= max_attempts:
            return True
        return deadline is not None and time.monotonic() + state.upcoming_sleep >= deadline

    def give_up(state: RetryCallState) -> T:
        error = _failure(state)
        if max_attempts is not None and state.attempt_number >= max_attempts:
            raise AttemptsExhausted(
                market=getattr(error, "market", "?"),
                endpoint=getattr(error, "endpoint", None),
                attempts=state.attempt_number,
                last_error=str(error),
                status=getattr(error, "status", None),
            ) from error
        retry_after = state.upcoming_sleep
        if isinstance(error, RateLimited) and error.retry_after is not None:
            retry_after = max(retry_after, error.retry_after)
        raise RetryLater(retry_after, f"deadline reached while retrying: {error}") from error

    def before_sleep(state: RetryCallState) -> None:
        failures.append(str(_failure(state)))
        log.warning(
            "market.retry",
            **context,
            attempt=state.attempt_number,
            error=str(_failure(state)),
            pause=round(state.upcoming_sleep, 3),
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=pause,
        stop=stop,
        retry_error_callback=give_up,
        before_sleep=before_sleep,
    )
    result: T = await retrying(attempt_noting_failures)
    return result
