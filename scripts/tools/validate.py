"""Checking a job before it is sent: the envelope, its market, what the market offers and the
SQS body limit. Pure: no Redis, no limiter, no HTTP session is made to check a line."""

from __future__ import annotations

from markets import PermanentError
from markets.config import Config
from worker.envelope import (
    Envelope,
    PoisonMessage,
    PreparedJob,
    parse_envelope,
    prepare_envelope,
)
from worker.sqs import MESSAGE_BYTES

__all__ = ["BadJob", "JobValidator", "parse_job"]


class BadJob(ValueError):
    """A job that would be dead-lettered at once (or refused by SQS); the message is one line."""


def parse_job(body: str) -> Envelope:
    """Parse one message body (a JSON object) as an envelope; else `BadJob` saying why."""
    try:
        return parse_envelope(body)
    except PoisonMessage as exc:
        raise BadJob(exc.reason) from None


class JobValidator:
    """Validates message bodies for one market against the config alone."""

    def __init__(self, config: Config, market: str) -> None:
        config.market(market)  # an unknown market is a ConfigError, before any line
        self.config = config
        self.market = market

    def check_envelope(self, envelope: Envelope) -> PreparedJob:
        """The job if the worker could run it (`prepare_envelope`, the worker's own check);
        else `BadJob` saying why."""
        if envelope.market != self.market:
            raise BadJob(f"market is {envelope.market!r}, not {self.market!r}")
        try:
            job = prepare_envelope(envelope, self.config)
        except PermanentError as exc:
            raise BadJob(str(exc)) from None
        except PoisonMessage as exc:
            raise BadJob(exc.reason) from None
        size = len(envelope.body().encode())
        if size > MESSAGE_BYTES:
            raise BadJob(f"message is {size} bytes, over SQS's limit of {MESSAGE_BYTES}")
        return job

    def check_body(self, body: str) -> PreparedJob:
        """Parse and check one message body (a JSON object)."""
        return self.check_envelope(parse_job(body))
