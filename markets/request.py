"""A job as the worker hands it over, and what the job gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markets.watermark import Watermark

__all__ = ["JobRequest", "JobResult"]


@dataclass(frozen=True)
class JobRequest:
    """One job: its `kind` names what to do, `payload` the details (validated per kind)."""

    kind: str
    market: str
    seller: str
    payload: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class JobResult:
    """What a job collected (`data`, JSON-serialisable) and how many HTTP requests it sent;
    `watermark`: where the seller's collection moves once this result is delivered."""

    kind: str
    market: str
    seller: str
    data: Any
    calls: int
    watermark: Watermark | None = None
