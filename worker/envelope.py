"""The message envelope: one JSON object per SQS message body (docs/DESIGN.md, Messages)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lanes.config import describe_validation_error

__all__ = ["Envelope", "PoisonMessage", "parse_envelope"]


class PoisonMessage(ValueError):
    """A body that can never be processed: it is dead-lettered at once with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Envelope(BaseModel):
    """`{"kind", "market", "seller", "payload", "id"?}`; the lane is the queue it sits in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    market: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    seller: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = {}
    id: str | None = Field(default=None, min_length=1, max_length=128)

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
    except (ValueError, RecursionError) as exc:
        # NaN/Infinity, an integer over Python's 4300-digit limit, nesting too deep.
        raise PoisonMessage(f"body is not acceptable JSON: {exc}"[:300]) from None
    if not isinstance(raw, dict):
        raise PoisonMessage(f"body is JSON {type(raw).__name__}, not an object")
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        raise PoisonMessage(describe_validation_error(exc, "message")) from None
