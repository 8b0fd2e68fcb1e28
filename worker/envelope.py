"""The message envelope (docs/DESIGN.md, Messages) and the job prepared from it.

A body is parsed and validated once, without I/O, into a `PreparedJob`; the
processor then only runs it. Anything wrong is a `PoisonMessage` with a
one-line reason (dead-lettered at once, docs/DESIGN.md rule 7).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lanes.config import describe_validation_error
from markets import JobRequest
from markets.config import Config
from markets.service import CheckedJob, validate_job
from worker.queues import QueueName

__all__ = [
    "Envelope",
    "PoisonMessage",
    "PreparedJob",
    "parse_envelope",
    "prepare",
    "prepare_envelope",
]


class PoisonMessage(ValueError):
    """A body that can never be processed: it is dead-lettered at once with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_UNSAFE_SELLER = re.compile(r"[{}\x00-\x1f\x7f]")


class Envelope(BaseModel):
    """`{"kind", "market", "seller", "payload", "id"?}`; the lane is the queue it sits in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    market: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    seller: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = {}
    id: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("seller")
    @classmethod
    def _plain_seller(cls, seller: str) -> str:
        # Braces would break a per-seller budget's Redis hash tag; control characters a log line.
        if _UNSAFE_SELLER.search(seller):
            raise ValueError("may not contain '{', '}' or control characters")
        return seller

    def body(self) -> str:
        """The JSON body to send: compact, without unset optional fields."""
        return self.model_dump_json(exclude_none=True)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_envelope(body: str) -> Envelope:
    """Validate a message body; anything wrong raises `PoisonMessage` with a one-line reason."""
    try:
        raw = json.loads(body, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise PoisonMessage(f"body is not JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise PoisonMessage(f"body is not usable JSON: {_first_line(exc)}") from None
    except RecursionError:
        raise PoisonMessage("body is nested too deeply") from None
    if not isinstance(raw, dict):
        raise PoisonMessage(f"body is JSON {type(raw).__name__}, not an object")
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        raise PoisonMessage(describe_validation_error(exc, "message")) from None
    except RecursionError:
        raise PoisonMessage("body is nested too deeply") from None


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A message's job, validated once: the envelope, and the checked job (spec, payload,
    side effect or not) that the market runs on every attempt without checking again."""

    envelope: Envelope
    checked: CheckedJob

    @property
    def request(self) -> JobRequest:
        return self.checked.request

    @property
    def side_effect(self) -> bool:
        return self.checked.side_effect


def prepare_envelope(envelope: Envelope, config: Config) -> PreparedJob:
    """The envelope's job checked against `config` (no I/O): the one conversion from an
    envelope to a job, for the worker, the HTTP API and `lanes enqueue` alike. The market's
    `PermanentError`, or `PoisonMessage`, when it can never run."""
    request = JobRequest(
        kind=envelope.kind,
        market=envelope.market,
        seller=envelope.seller,
        payload=dict(envelope.payload),
        id=envelope.id,
    )
    try:
        return PreparedJob(envelope, validate_job(config, request))
    except RecursionError:
        raise PoisonMessage("payload is nested too deeply") from None


def prepare(body: str, queue: QueueName, config: Config) -> PreparedJob:
    """Parse and validate `body` from `queue` (no I/O); `PoisonMessage` or the market's
    `PermanentError` when it can never run."""
    envelope = parse_envelope(body)
    if envelope.market != queue.market:
        raise PoisonMessage(
            f"message names market {envelope.market!r} but sits in queue {queue.queue!r}"
        )
    return prepare_envelope(envelope, config)
