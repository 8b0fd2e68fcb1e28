"""What lanes records in Redis about each job: its status, its attempts, a result kept back.

- **Status** (`JobTracker`), for the HTTP API and operators: one JSON record per
  job at `lanes:job:{id}` (the producer's `id`, else the SQS message id), kept
  `ttl` seconds after its last change:

  ```json
  {"id": "ship-1", "state": "done", "market": "acme", "lane": "high",
   "kind": "call", "seller": "s-1", "message_id": "…", "attempts": 1,
   "updated_at": "2026-11-26T16:00:00.123+00:00", "result": {...}, "calls": 1}
  ```

  `state` is `queued` (sent, or back in its queue after a wait), `running`,
  `done` (with `result`, the market data the job returned, and its `calls`), `failed` (an attempt
  failed; it runs again after `retry_in` s, with `error`) or `dead_lettered`
  (with `reason` and `error`). A record naming its market and seller also puts its
  id in that seller's index (`lanes:seller-jobs:{market}:{seller}`, a sorted set by
  last change, the newest `SELLER_JOBS` kept, the same `ttl`), in the same round
  trip: `recent` reads a seller's jobs back (the board's seller view). Settled states
  (`done`, `failed`, `dead_lettered`) are also counted per minute by market and lane
  (`lanes:outcomes:{minute}`, a hash kept an hour), in the same round trip: `outcomes`.
- **Waiting since** (`oldest_waiting`): SQS gives a queue's age of the oldest message
  only to CloudWatch, and reading it from the queue would take (receive) messages. So
  each lane keeps a sorted set of its jobs not yet settled, by when lanes first recorded
  them (`lanes:waiting:{market}:{lane}`: added NX by `queued`, `running`, `failed`,
  removed by `done`; `dead_lettered` moves the job to `...:dead`, and any later record
  in the lane, a replayed job's, takes it out of there), in the same round trip. A job
  sent by the API is recorded `queued` as it is sent; one sent straight to SQS (`lanes
  enqueue`, another producer) is known from a worker's first record of it. Entries are
  dropped after `ttl` (the records' lifetime), so a lost settle costs at most that.
- **Attempts** (`Attempts`): the attempts a message has spent, counted by lanes
  and not by SQS receives, so waits (budget, Redis, a claim, a sink) never
  count (docs/DESIGN.md rule 12) and a message whose deliveries keep dying is
  still stopped after its lane's `max_attempts`.
- **Kept results**: a finished job whose result the sink could not take is kept
  here, so its redelivery sends the result instead of running the job again.

Writes are best effort where losing one only costs a status line; the attempt
count and kept results raise `BudgetUnavailable` (Redis down is a wait).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable
from worker.queues import Delivery

__all__ = [
    "SELLER_JOBS",
    "STATES",
    "Attempts",
    "JobTracker",
    "job_key",
    "oldest_waiting",
    "outcomes_key",
    "seller_jobs_key",
    "waiting_key",
]

STATES = ("queued", "running", "done", "failed", "dead_lettered")
SELLER_JOBS = 1000  # the newest job ids kept per seller
_COUNTED = frozenset({"done", "failed", "dead_lettered"})
_OUTCOMES_KEEP = 3600  # seconds a minute's outcome counts are kept
_log = structlog.get_logger("worker.tracking")


def job_key(job_id: str) -> str:
    """The Redis key of job `job_id`'s status record."""
    return f"lanes:job:{job_id}"


def seller_jobs_key(market: str, seller: str) -> str:
    """The Redis key of a seller's index of recent job ids (scored by last change, epoch s)."""
    return f"lanes:seller-jobs:{market}:{seller}"


def outcomes_key(minute: int) -> str:
    """The hash of the outcome counts of `minute` (Unix time // 60), fields
    `{market}:{lane}:{state}`."""
    return f"lanes:outcomes:{minute}"


def waiting_key(market: str, lane: str, *, dead_letter: bool = False) -> str:
    """The sorted set of a lane's (or its dead-letter queue's) unsettled job ids, scored
    by when lanes first recorded them there (epoch s)."""
    return f"lanes:waiting:{market}:{lane}" + (":dead" if dead_letter else "")


async def oldest_waiting(
    redis: aioredis.Redis, queues: Iterable[tuple[str, str, bool]], now: float
) -> list[float | None]:
    """Per `(market, lane, dead_letter)`: seconds since the oldest job still waiting there
    was first recorded, or None (none known). One round trip.

    Raises `BudgetUnavailable` when Redis cannot be read.
    """
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for market, lane, dead in queues:
                pipe.zrange(waiting_key(market, lane, dead_letter=dead), 0, 0, withscores=True)
            found = await pipe.execute()
    except RedisError as exc:
        raise BudgetUnavailable(f"job records unreachable: {exc}") from exc
    return [max(0.0, now - float(first[0][1])) if first else None for first in found]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


async def _get_json(redis: aioredis.Redis, key: str, what: str) -> dict[str, Any] | None:
    """The JSON object at `key`, or None; `BudgetUnavailable` naming `what` if Redis fails."""
    try:
        raw = await redis.get(key)
    except RedisError as exc:
        raise BudgetUnavailable(f"{what} unreachable: {exc}") from exc
    if raw is None:
        return None
    record: dict[str, Any] = json.loads(raw)
    return record


class JobTracker:
    """Writes status records; `get` reads one back (the API's way)."""

    def __init__(self, redis: aioredis.Redis, *, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl

    async def update(self, job_id: str, state: str, **fields: Any) -> dict[str, Any]:
        """Record `job_id` as `state` with `fields`; a Redis failure is logged, not raised."""
        (record,) = await self.update_many([{"id": job_id, "state": state, **fields}])
        return record

    async def update_many(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store each record (`id` and `state` included) stamped now, in one round trip.

        Best effort: a lost status line costs less than failing the job it describes.
        Returns the records as stored.
        """
        now = datetime.now(UTC)
        stamp = now.isoformat(timespec="milliseconds")
        stamped = [{**record, "updated_at": stamp} for record in records]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for record in stamped:
                    job_id = str(record["id"])
                    pipe.set(job_key(job_id), _dumps(record), ex=self._ttl)
                    market, seller = record.get("market"), record.get("seller")
                    if market and seller:
                        index = seller_jobs_key(str(market), str(seller))
                        pipe.zadd(index, {job_id: now.timestamp()})
                        pipe.zremrangebyrank(index, 0, -SELLER_JOBS - 1)
                        pipe.expire(index, self._ttl)
                    lane, state = record.get("lane"), record.get("state")
                    if market and lane:
                        self._waiting(pipe, str(market), str(lane), job_id, str(state), now)
                    if market and lane and state in _COUNTED:
                        counts = outcomes_key(int(now.timestamp() // 60))
                        pipe.hincrby(counts, f"{market}:{lane}:{state}", 1)
                        pipe.expire(counts, _OUTCOMES_KEEP)
                await pipe.execute()
        except RedisError as exc:
            _log.warning("tracking.write_failed", error=str(exc))
        return stamped

    def _waiting(
        self, pipe: Any, market: str, lane: str, job_id: str, state: str, now: datetime
    ) -> None:
        """Keep the lane's waiting sets (see the module's docstring) in `pipe`."""
        queue = waiting_key(market, lane)
        dead = waiting_key(market, lane, dead_letter=True)
        if state == "done":
            pipe.zrem(queue, job_id)
            return
        if state == "dead_lettered":
            pipe.zrem(queue, job_id)
            into = dead
        else:  # in its lane again (a replayed job's too)
            pipe.zrem(dead, job_id)
            into = queue
        pipe.zadd(into, {job_id: now.timestamp()}, nx=True)
        pipe.zremrangebyscore(into, "-inf", now.timestamp() - self._ttl)
        pipe.expire(into, self._ttl)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """The record of `job_id`, or None when there is none (or it expired).

        Raises `BudgetUnavailable` when Redis cannot be read.
        """
        return await _get_json(self._redis, job_key(job_id), "job records")

    async def recent(self, market: str, seller: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The seller's newest `limit` records, newest first (expired ones left out).

        Raises `BudgetUnavailable` when Redis cannot be read.
        """
        try:
            ids = await self._redis.zrevrange(seller_jobs_key(market, seller), 0, limit - 1)
            # GETs in one pipeline, not MGET: the records' keys are in many cluster slots.
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.get(job_key(job_id.decode() if isinstance(job_id, bytes) else str(job_id)))
                raw = await pipe.execute()
        except RedisError as exc:
            raise BudgetUnavailable(f"job records unreachable: {exc}") from exc
        return [json.loads(value) for value in raw if value is not None]

    async def count(self, market: str, lane: str, outcome: str, n: int) -> None:
        """Count `n` `outcome`s of this minute that no status record tells (the dead
        letters the board replayed or deleted). Best effort, as the status writes."""
        counts = outcomes_key(int(datetime.now(UTC).timestamp() // 60))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(counts, f"{market}:{lane}:{outcome}", n)
                pipe.expire(counts, _OUTCOMES_KEEP)
                await pipe.execute()
        except RedisError as exc:
            _log.warning("tracking.write_failed", error=str(exc))

    async def outcomes(self, minute: int) -> dict[str, int]:
        """`{"market:lane:state": count}` settled in `minute` (Unix time // 60).

        Raises `BudgetUnavailable` when Redis cannot be read.
        """
        try:
            raw = await self._redis.hgetall(outcomes_key(minute))
        except RedisError as exc:
            raise BudgetUnavailable(f"outcome counts unreachable: {exc}") from exc
        return {
            (name.decode() if isinstance(name, bytes) else str(name)): int(count)
            for name, count in raw.items()
        }


class Attempts:
    """Per message: attempts spent (a Redis counter) and a result kept for its sink."""

    def __init__(self, redis: aioredis.Redis, *, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl
        self._spend = redis.register_script(
            resources.files("worker").joinpath("attempt.lua").read_text(encoding="utf-8")
        )

    @staticmethod
    def _key(delivery: Delivery, what: str) -> str:
        return f"lanes:{what}:{{{delivery.queue.queue}}}:{delivery.message.message_id}"

    async def spend(self, delivery: Delivery) -> int:
        """Count one attempt of `delivery` (before it runs); the attempts spent, this one too."""
        try:
            count = await self._spend(keys=[self._key(delivery, "attempts")], args=[self._ttl])
        except RedisError as exc:
            raise BudgetUnavailable(f"attempt count unreachable: {exc}") from exc
        return int(count)

    async def refund(self, delivery: Delivery) -> None:
        """The attempt just counted ended in a wait: it was not spent. Best effort."""
        try:
            await self._redis.decr(self._key(delivery, "attempts"))
        except RedisError as exc:
            _log.warning("tracking.refund_failed", error=str(exc))

    async def keep_result(self, delivery: Delivery, record: dict[str, Any]) -> None:
        """Keep a finished job's result until the sink takes it."""
        try:
            await self._redis.set(self._key(delivery, "result"), _dumps(record), ex=self._ttl)
        except RedisError as exc:
            raise BudgetUnavailable(f"result store unreachable: {exc}") from exc

    async def kept_result(self, delivery: Delivery) -> dict[str, Any] | None:
        """The result kept for `delivery`, if an earlier delivery finished the job."""
        return await _get_json(self._redis, self._key(delivery, "result"), "result store")

    async def forget_result(self, delivery: Delivery) -> None:
        try:
            await self._redis.delete(self._key(delivery, "result"))
        except RedisError as exc:
            _log.warning("tracking.forget_failed", error=str(exc))
