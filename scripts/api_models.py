"""The HTTP API's answers, as pydantic models (they make the OpenAPI page at /docs)."""

from __future__ import annotations

from pydantic import BaseModel

from scripts.job_records import JobRecord

__all__ = [
    "CollectQueued",
    "Collected",
    "JobProblem",
    "JobsAccepted",
    "JobsRefused",
    "Problem",
    "SentJob",
]


class SentJob(BaseModel):
    """One job sent: its place in the request, its `id` (the producer's, or one given by the
    API) for `GET /v1/jobs/{id}`, and the SQS message id."""

    index: int
    id: str
    market: str
    queue: str
    message_id: str


class JobsAccepted(BaseModel):
    lane: str
    count: int
    jobs: list[SentJob]


class JobProblem(BaseModel):
    """Why one job was refused; `field` is a dotted path in the job where one is known."""

    index: int
    field: str | None
    reason: str


class JobsRefused(BaseModel):
    detail: str
    errors: list[JobProblem]


class Problem(BaseModel):
    detail: str


class Collected(JobRecord):
    """A collection run at once: the job's record (state `done`) and the HTTP calls it made."""

    calls: int


class CollectQueued(JobRecord):
    """Past `wait`: the job was sent to its lane queue instead (state `queued`)."""

    message_id: str
    retry_after: float | None = None
