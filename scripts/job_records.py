"""Job status records in Redis: what `GET /v1/jobs/{id}` reads.

One JSON value per job under `lanes:job:{id}`, with a TTL:
`{"id", "state", "market", "lane", "kind", "seller", "result"?, "reason"?, "updated_at"}`.
The API writes `queued` when it enqueues a job and `done` or `failed` when it ran
one itself; `TrackingSink` writes `done` for the jobs a worker finished, so any
worker whose results sink is wrapped in it keeps the records current.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable
from worker.sinks import ResultSink

__all__ = ["DEFAULT_RECORD_TTL", "JobRecord", "JobRecords", "JobState", "TrackingSink"]

DEFAULT_RECORD_TTL = 24 * 3600


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"


class JobRecord(BaseModel):
    """A job's latest known state; `result` when done, `reason` when failed or dead-lettered."""

    id: str
    state: JobState
    market: str
    lane: str
    kind: str
    seller: str
    result: Any = None
    reason: str | None = None
    updated_at: str = Field(default_factory=_now)


class JobRecords:
    """Reads and writes `lanes:job:{id}`; a Redis failure raises `BudgetUnavailable`."""

    def __init__(self, redis: aioredis.Redis, *, ttl: int = DEFAULT_RECORD_TTL) -> None:
        self._redis = redis
        self._ttl = ttl

    @staticmethod
    def key(job_id: str) -> str:
        return f"lanes:job:{job_id}"

    async def write(self, *records: JobRecord) -> list[JobRecord]:
        """Store each record stamped now, in one round trip; returns the stamped records."""
        stamp = _now()
        stamped = [record.model_copy(update={"updated_at": stamp}) for record in records]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for record in stamped:
                    value = record.model_dump_json(exclude_none=True)
                    pipe.set(self.key(record.id), value, ex=self._ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"job records unreachable: {exc}") from exc
        return stamped

    async def get(self, job_id: str) -> JobRecord | None:
        try:
            raw = await self._redis.get(self.key(job_id))
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"job records unreachable: {exc}") from exc
        return None if raw is None else JobRecord.model_validate_json(raw)


class TrackingSink:
    """A results sink that also marks the job `done` in its status record.

    Wraps the worker's sink (the hook the worker's own tracker replaces): the
    record is written after the result is stored, best effort, so a Redis
    outage never fails a job that succeeded.
    """

    def __init__(self, inner: ResultSink, records: JobRecords) -> None:
        self._inner = inner
        self._records = records

    async def send(self, record: dict[str, Any]) -> None:
        await self._inner.send(record)
        job_id = record.get("id") or record.get("message_id")
        if not job_id:
            return
        done = JobRecord(
            id=str(job_id),
            state=JobState.DONE,
            market=str(record.get("market")),
            lane=str(record.get("lane")),
            kind=str(record.get("kind")),
            seller=str(record.get("seller")),
            result=record.get("data"),
        )
        try:
            await self._records.write(done)
        except BudgetUnavailable:
            return  # the result itself is stored; the record only lags

    async def aclose(self) -> None:
        await self._inner.aclose()
