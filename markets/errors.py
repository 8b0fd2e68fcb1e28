"""How a market call can end badly: transient (retry), permanent (do not), or later."""

from __future__ import annotations

from lanes.errors import LanesError

__all__ = [
    "AttemptsExhausted",
    "LateSend",
    "MarketError",
    "NotSent",
    "OutcomeUnknown",
    "PartialFailure",
    "PermanentError",
    "QuotaExhausted",
    "RateLimited",
    "RetryLater",
    "TransientError",
    "late_send",
]


class MarketError(LanesError):
    """A call to `market` (at `endpoint`, when known) failed."""

    def __init__(self, text: str, *, market: str, endpoint: str | None = None) -> None:
        where = f"{market}:{endpoint}" if endpoint else market
        super().__init__(f"{where}: {text}")
        self.market = market
        self.endpoint = endpoint


class TransientError(MarketError):
    """Worth retrying: 5xx, a timeout, a lost connection, a 429."""

    def __init__(
        self, text: str, *, market: str, endpoint: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(text, market=market, endpoint=endpoint)
        self.status = status


class NotSent(TransientError):
    """The request never reached the market (no connection): repeating it cannot do twice."""


class LateSend(NotSent):
    """Its budget ticket was past its tolerance where its bytes were to be written: the
    request was stopped before a byte left (docs/DESIGN.md rule 9)."""


def late_send(exc: BaseException) -> LateSend | None:
    """The `LateSend` that `exc` is or was caused by: aiohttp wraps an exception raised
    while it writes a request body (in a task of its own) in a `ClientConnectionError`."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, LateSend):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__
    return None


class RateLimited(TransientError):
    """The market answered 429; `retry_after` is the cooldown put on the budget (the market's
    Retry-After, or the market's backoff when it sent none)."""

    def __init__(
        self,
        text: str,
        *,
        market: str,
        endpoint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(text, market=market, endpoint=endpoint, status=429)
        self.retry_after = retry_after


class AttemptsExhausted(TransientError):
    """A lane with `max_attempts` tried that many times; `last_error` is the last failure."""

    def __init__(
        self,
        *,
        market: str,
        endpoint: str | None,
        attempts: int,
        last_error: str,
        status: int | None = None,
    ) -> None:
        super().__init__(
            f"gave up after {attempts} attempts: {last_error}",
            market=market,
            endpoint=endpoint,
            status=status,
        )
        self.attempts = attempts
        self.last_error = last_error


class PermanentError(MarketError):
    """Retrying cannot help: a 4xx answer, bad credentials, an invalid or unknown request.

    `code` and `message` are the market's own where it gave them.
    """

    def __init__(
        self,
        message: str,
        *,
        market: str,
        endpoint: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        head = " ".join(str(part) for part in (status, code) if part is not None)
        super().__init__(
            f"{head}: {message}" if head else message, market=market, endpoint=endpoint
        )
        self.status = status
        self.code = code
        self.message = message


class OutcomeUnknown(PermanentError):
    """A side effect's request may or may not have landed and the market cannot tell us:
    never re-posted blindly, it stops for a person (docs/DESIGN.md rule 11)."""


class PartialFailure(PermanentError):
    """Some items of a side effect were done, the rest refused for good (listed per item);
    `done` and `failed` (item id -> the market's reason) go to the dead letter's reason."""

    def __init__(
        self, *, market: str, endpoint: str, done: list[str], failed: dict[str, str]
    ) -> None:
        listed = "; ".join(f"{item}: {reason}" for item, reason in failed.items())
        done_text = ", ".join(done) if done else "none"
        super().__init__(
            f"{len(failed)} item(s) failed: {listed} (done: {done_text})",
            market=market,
            endpoint=endpoint,
        )
        self.done = done
        self.failed = failed


class RetryLater(LanesError):
    """The caller's deadline came before success: not a failure, ask again in `retry_after` s."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(f"retry later (in {retry_after:.1f}s): {reason}")
        self.retry_after = retry_after
        self.reason = reason


class QuotaExhausted(RetryLater):
    """The market's quota (not its rate) is spent until `retry_at` (Unix time, seconds).

    The budget is paused for every worker until then; as a `RetryLater` the worker
    releases the message with a visibility of `retry_after` seconds, holding no slot.
    """

    def __init__(
        self, *, market: str, endpoint: str | None, retry_after: float, retry_at: float, code: str
    ) -> None:
        where = f"{market}:{endpoint}" if endpoint else market
        super().__init__(retry_after, f"{where}: quota exhausted ({code})")
        self.market = market
        self.endpoint = endpoint
        self.retry_at = retry_at
        self.code = code
