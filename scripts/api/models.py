"""The HTTP API's answers, as pydantic models (they make the OpenAPI page at /docs)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel

__all__ = [
    "CollectQueued",
    "Collected",
    "FieldProblem",
    "Health",
    "JobRecord",
    "JobState",
    "JobsAccepted",
    "Problem",
    "SentJob",
]


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"


class JobRecord(BaseModel):
    """A job's latest known state, as `worker.tracking.JobTracker` stores it: `result` when
    done, `error` and `retry_in` after a failed attempt, `reason` when dead-lettered."""

    id: str
    state: JobState
    market: str | None = None
    lane: str | None = None
    kind: str | None = None
    seller: str | None = None
    message_id: str | None = None
    attempts: int | None = None
    result: Any = None
    calls: int | None = None
    error: str | None = None
    reason: str | None = None
    retry_in: float | None = None
    waiting: str | None = None
    updated_at: str | None = None


class SentJob(BaseModel):
    """One job sent: its place in the request, its `id` (the producer's, or one given by the
    API) for `GET /v1/jobs/{id}`, and the SQS message id."""

    index: int
    id: str
    market: str
    queue: str
    message_id: str


class JobsAccepted(BaseModel):
    """The jobs sent, in request order. All sent (202): `unsent` is empty. Partly sent (207):
    `stopped` says why (the request's deadline, or SQS failing after some were sent) and
    `unsent` lists the indexes not sent; the same request again with the same
    Idempotency-Key sends only those, and the jobs sent keep their ids."""

    lane: str
    count: int
    jobs: list[SentJob]
    unsent: list[int] = []
    stopped: str | None = None


class FieldProblem(BaseModel):
    """One thing wrong: `index` is the job's place in the request (None when the problem is
    not one job's), `field` a dotted path in the job, or the parameter or header at fault
    (`wait`, `Idempotency-Key`, `body`), where one is known."""

    index: int | None
    field: str | None
    reason: str


class Problem(BaseModel):
    """Every refusal and error (4xx, 503): what happened, and each problem found."""

    detail: str
    errors: list[FieldProblem]


class Health(BaseModel):
    redis: str


class Collected(JobRecord):
    """A collection run at once: the job's record (state `done`) and the HTTP calls it made."""

    calls: int


class CollectQueued(JobRecord):
    """Past `wait`: the job was sent to its lane queue instead (state `queued`)."""

    message_id: str
    retry_after: float | None = None
