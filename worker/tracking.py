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
  last change, trimmed to the newest `SELLER_JOBS`, each entry kept `ttl` at least), in
  the same round trip: `recent` reads a seller's jobs back (the board's seller view).
  Settled states (`done`, `failed`, `dead_lettered`) are also counted per minute by market
  and lane (`lanes:outcomes:{minute}`, a hash kept an hour at least), in the same round
  trip: `outcomes`. Records handed over together share one round trip, their aggregates
  merged, and each aggregate key's EXPIRE and trim go once a minute per process
  (`JobTracker`: group commit, expiry memo).
- **Waiting since** (`oldest_waiting`): SQS gives a queue's age of the oldest message
  only to CloudWatch, and reading it from the queue would take (receive) messages. So
  each lane keeps a sorted set of its jobs not yet settled, by when lanes first recorded
  them (`lanes:waiting:{market}:{lane}`: added NX by `queued`, `running`, `failed`,
  removed by `done`; `dead_lettered` moves the job to `...:dead`, and any later record
  in the lane, a replayed job's, takes it out of there), in the same round trip. A job
  sent by the API is recorded `queued` as it is sent; one sent straight to SQS (`lanes
  enqueue`, another producer) is known from a worker's first record of it. Entries are
  dropped after `ttl` (the records' lifetime) and at most `MEMO_PERIOD` s more, so a lost
  settle costs at most that.
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

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable
from worker.queues import Delivery

__all__ = [
    "MEMO_PERIOD",
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
_OUTCOMES_KEEP = 3600  # seconds a minute's outcome counts are kept, at least
# Seconds between one process's EXPIREs (and trims, prunes) of one aggregate key.
MEMO_PERIOD = 60
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


@dataclass(eq=False)
class _Write:
    """One caller's hand-over: records stamped at `at` (epoch s), outcome counts
    `(key, field, n)`, and the future its caller awaits."""

    records: list[dict[str, Any]]
    at: float
    counts: list[tuple[str, str, int]]
    done: asyncio.Future[None]


# A waiting-set change for one member, merged over a round trip: remove it, add it NX
# (the first time stays), or set its score (removed earlier in the same round trip).
_REMOVE, _ADD_NX, _SET = "remove", "add_nx", "set"


@dataclass
class _Merged:
    """One round trip's writes, merged per key (see `JobTracker` for the rules)."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> its last record
    indexes: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> id -> score
    waiting: dict[str, dict[str, tuple[str, float]]] = field(default_factory=dict)
    counts: dict[str, Counter[str]] = field(default_factory=dict)  # key -> field -> n

    def wait(self, key: str, job_id: str, change: str, score: float = 0.0) -> None:
        members = self.waiting.setdefault(key, {})
        before = members.get(job_id)
        if change == _REMOVE or before is None:
            members[job_id] = (change, score)
        elif before[0] == _REMOVE:
            members[job_id] = (_SET, score)  # removed, then added anew: its new time
        # an add after an add keeps the first time (NX)

    def count(self, key: str, name: str, n: int) -> None:
        self.counts.setdefault(key, Counter())[name] += n


class JobTracker:
    """Writes status records; `get` reads one back (the API's way).

    **Group commit.** `update`, `update_many` and `count` return once their writes are
    sent and answered, but do not each send their own round trip: what callers hand over
    while one round trip is under way leaves together in the next one (one drainer task,
    as `lanes.batcher` does for the budget), so a burst of settles costs one round trip.
    A caller cancelled while waiting still has its writes sent, in order (they were
    handed over), and leaves the others unharmed; a failed round trip is logged and
    reaches every waiter of its batch as a return (best effort), anything unexpected as
    the exception it was. `flush` waits for what was handed over (the owner's `aclose`).

    **Merged aggregates.** Per round trip: one SET per job (its last record), one ZADD
    per seller index with all its members, per waiting set one ZREM and one ZADD NX (a
    job removed and added again in the same round trip: a plain ZADD), one HINCRBY per
    outcome field with the summed count.

    **Expiry memo.** A seller index and an outcome hash only ever grow until they expire,
    so their EXPIRE is sent at most once per `period` s per key by this process, set to
    their lifetime (`ttl`; an hour for outcome counts) + `period`: an entry written at t
    follows an EXPIRE sent at e > t - period, so it lives at least until
    e + ttl + period > t + ttl. The seller index is trimmed to its
    newest `SELLER_JOBS` with that EXPIRE (between trims it holds more; `recent` reads the
    newest). A waiting set can be emptied by removals, and so deleted: each round trip
    that adds to one also sends its EXPIRE (`ttl`), while its prune of entries older than
    `ttl` goes at most once per `period` s (an entry is dropped `ttl` to `ttl + period`
    after it was added, if its set is written meanwhile). The memo is remembered only
    once its round trip succeeded.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl: int,
        period: int = MEMO_PERIOD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._ttl = ttl
        self._period = period
        self._clock = clock
        self._pending: list[_Write] = []
        self._drainer: asyncio.Task[None] | None = None
        self._kept: dict[str, float] = {}  # aggregate key -> when its upkeep last went
        self._swept = 0.0  # when `_kept` was last cleared of lapsed keys

    async def update(self, job_id: str, state: str, **fields: Any) -> dict[str, Any]:
        """Record `job_id` as `state` with `fields`; a Redis failure is logged, not raised."""
        (record,) = await self.update_many([{"id": job_id, "state": state, **fields}])
        return record

    async def update_many(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store each record (`id` and `state` included) stamped now; returns once they are
        stored (in the round trip that carries them, see the class text).

        Best effort: a lost status line costs less than failing the job it describes.
        Returns the records as stored.
        """
        now = self._clock()
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        stamped = [{**record, "updated_at": stamp} for record in records]
        await self._hand_over(stamped, now, [])
        return stamped

    async def count(self, market: str, lane: str, outcome: str, n: int) -> None:
        """Count `n` `outcome`s of this minute that no status record tells (the dead
        letters the board replayed or deleted). Best effort, as the status writes."""
        now = self._clock()
        await self._hand_over(
            [], now, [(outcomes_key(int(now // 60)), f"{market}:{lane}:{outcome}", n)]
        )

    async def flush(self) -> None:
        """Wait until everything handed over so far is written (or its write failed)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.wait([self._drainer])  # never cancels the drainer

    async def _hand_over(
        self, records: list[dict[str, Any]], at: float, counts: list[tuple[str, str, int]]
    ) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Write(records, at, counts, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        """Send what is pending, one round trip at a time, until nothing is."""
        while self._pending:
            batch, self._pending = self._pending, []
            failure: Exception | None = None
            try:
                await self._send(batch)
            except RedisError as exc:
                _log.warning("tracking.write_failed", error=str(exc))
            except asyncio.CancelledError:  # the loop is closing: no waiter is left hanging
                for write in (*batch, *self._pending):
                    write.done.cancel()
                self._pending.clear()
                raise
            except Exception as exc:  # noqa: BLE001 - logged, and raised to every waiter
                _log.exception("tracking.write_crashed")
                failure = exc
            for write in batch:
                if write.done.done():  # its caller was cancelled
                    continue
                if failure is None:
                    write.done.set_result(None)
                else:
                    write.done.set_exception(failure)

    async def _send(self, batch: list[_Write]) -> None:
        merged = _Merged()
        for write in batch:
            for record in write.records:
                self._merge(merged, record, write.at)
            for key, name, n in write.counts:
                merged.count(key, name, n)
        now = self._clock()
        upkept: list[str] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, record in merged.records.items():
                pipe.set(job_key(job_id), _dumps(record), ex=self._ttl)
            for key, members in merged.indexes.items():
                pipe.zadd(key, members)
                if self._due(key, now, upkept):
                    pipe.zremrangebyrank(key, 0, -SELLER_JOBS - 1)
                    pipe.expire(key, self._ttl + self._period)
            for key, changes in merged.waiting.items():
                self._wait(pipe, key, changes, now, upkept)
            for key, counts in merged.counts.items():
                for name, n in counts.items():
                    pipe.hincrby(key, name, n)
                if self._due(key, now, upkept):
                    pipe.expire(key, _OUTCOMES_KEEP + self._period)
            await pipe.execute()
        self._kept.update(dict.fromkeys(upkept, now))
        if now - self._swept >= self._period:  # forget lapsed keys: a seller may not return
            self._kept = {key: at for key, at in self._kept.items() if now - at < self._period}
            self._swept = now

    def _due(self, key: str, now: float, upkept: list[str]) -> bool:
        """Whether `key`'s upkeep (EXPIRE, trim or prune) goes in this round trip."""
        if now - self._kept.get(key, -math.inf) < self._period:
            return False
        upkept.append(key)
        return True

    def _merge(self, merged: _Merged, record: dict[str, Any], at: float) -> None:
        """Add one record's writes to the round trip's (see the module's docstring)."""
        job_id = str(record["id"])
        merged.records[job_id] = record
        market, seller = record.get("market"), record.get("seller")
        if market and seller:
            merged.indexes.setdefault(seller_jobs_key(str(market), str(seller)), {})[job_id] = at
        lane, state = record.get("lane"), record.get("state")
        if not (market and lane):
            return
        queue = waiting_key(str(market), str(lane))
        dead = waiting_key(str(market), str(lane), dead_letter=True)
        if state == "done":
            merged.wait(queue, job_id, _REMOVE)
        elif state == "dead_lettered":
            merged.wait(queue, job_id, _REMOVE)
            merged.wait(dead, job_id, _ADD_NX, at)
        else:  # in its lane again (a replayed job's too)
            merged.wait(dead, job_id, _REMOVE)
            merged.wait(queue, job_id, _ADD_NX, at)
        if state in _COUNTED:
            merged.count(outcomes_key(int(at // 60)), f"{market}:{lane}:{state}", 1)

    def _wait(
        self,
        pipe: Any,
        key: str,
        changes: dict[str, tuple[str, float]],
        now: float,
        upkept: list[str],
    ) -> None:
        """One waiting set's merged changes in `pipe`: removals, adds, their upkeep."""
        removed = [job_id for job_id, (change, _) in changes.items() if change == _REMOVE]
        added = {job_id: at for job_id, (change, at) in changes.items() if change == _ADD_NX}
        moved = {job_id: at for job_id, (change, at) in changes.items() if change == _SET}
        if removed:
            pipe.zrem(key, *removed)
        if added:
            pipe.zadd(key, added, nx=True)
        if moved:
            pipe.zadd(key, moved)
        if added or moved:  # may have created it anew (a removal can empty and delete it)
            if self._due(key, now, upkept):
                pipe.zremrangebyscore(key, "-inf", now - self._ttl)
            pipe.expire(key, self._ttl)

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
