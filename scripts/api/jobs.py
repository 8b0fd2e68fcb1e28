"""Jobs sent through the HTTP API: checked exactly as `lanes enqueue` checks them, sent to
their lane queues only when every one is good, once per idempotency key.

The checks are `scripts.tools.validate` (the envelope, then the market's own); a job
without an `id` gets one, so its status can be read back and a side-effect job
runs at most once (docs/DESIGN.md rule 11). Under an idempotency key the id is
derived from the key and the job's place in the request, and what was sent is
recorded batch by batch (`SendLog`): a repeat of a request that stopped midway
(its deadline, an SQS failure) sends only what is missing, under the same ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lanes.errors import BudgetUnavailable
from lanes.policy import Lane
from scripts.api.models import FieldProblem, JobsAccepted, JobState, SentJob
from scripts.tools.sending import group_id
from scripts.tools.validate import BadJob, JobValidator, parse_job
from worker.envelope import Envelope, PreparedJob
from worker.idempotency import ClaimBusy, IdempotencyGuard
from worker.queues import QueueName
from worker.sqs import BATCH_ENTRIES, OutgoingMessage, SqsClient, SqsError
from worker.tracking import JobTracker

__all__ = [
    "MAX_JOBS",
    "BadRequest",
    "IdempotencyConflict",
    "Record",
    "Refused",
    "SendLog",
    "Sender",
    "check_jobs",
    "fingerprint",
    "idempotency_key",
    "job_ids",
    "new_job_id",
    "send_jobs",
    "send_once",
]

# One request holds at most this many jobs (each up to SQS's 1 MiB): the body limit
# (LANES_API_MAX_BODY_BYTES) is the tighter bound in practice.
MAX_JOBS = 1000
# The namespace of request keys in the idempotency store: never a market name
# (those start with a letter or digit), so never a worker's job key.
_NAMESPACE = "_api"
_KEY = re.compile(r"^[!-~]{1,200}$")
# How long a repeat waits for the first request (still sending) before answering 409.
_BUSY_WAIT_S = 10.0
# The send log's field holding the request's fingerprint (the others are job indexes).
_CONTENT = "fingerprint"
# "source: dotted.where: message", the shape of `lanes.config.describe_validation_error`.
_WHERE = re.compile(r"^(?P<source>message|[a-z][a-z0-9_]* payload): (?P<where>[^:]+): ")
_FIELDS = (
    ("unknown market", "market"),
    ("market is ", "market"),
    ("kind ", "kind"),
    ("unknown endpoint", "payload.endpoint"),
    ("budget is counted per seller", "seller"),
)

# Records the jobs of one batch as sent (see `send_jobs`).
Record = Callable[[Sequence[SentJob]], Awaitable[None]]


class Refused(ValueError):
    """Some jobs are bad: nothing was sent."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__(f"{len(problems)} job(s) refused; nothing was sent")
        self.problems = problems


class BadRequest(ValueError):
    """The request itself is wrong (empty, too many jobs, a malformed key): `field` names
    what is wrong."""

    def __init__(self, text: str, *, field: str) -> None:
        super().__init__(text)
        self.field = field


class IdempotencyConflict(ValueError):
    """The key was used for a different request, or its first request is still sending."""

    def __init__(self, text: str, *, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.retry_after = retry_after


def new_job_id() -> str:
    return uuid.uuid4().hex


def job_ids(key: str | None) -> Callable[[int], str]:
    """The id a job at `index` gets when it brings none: derived from the request's key (a
    repeat gives each job the same id), or new when the request has no key."""
    if key is None:
        return lambda _index: new_job_id()
    base = hashlib.sha256(key.encode()).hexdigest()[:24]
    return lambda index: f"{base}-{index}"


def _field(reason: str, market: str | None) -> str | None:
    """The job field a validation reason names (the reasons are one line, see above; a
    market's own check starts with `market[:endpoint]: `)."""
    if market is not None:
        reason = re.sub(rf"^{re.escape(market)}(:[^ :]+)?: ", "", reason)
    found = _WHERE.match(reason)
    if found is not None:
        where = found["where"]
        if found["source"] == "message":
            return where
        return "payload" if where == "(top level)" else f"payload.{where}"
    return next((field for prefix, field in _FIELDS if reason.startswith(prefix)), None)


def _check_one(job: Any, validators: Mapping[str, JobValidator], job_id: str) -> PreparedJob:
    """`JobValidator.check_body` of the job (with `job_id` when it has no id), the validator
    picked by the job's market."""
    if not isinstance(job, dict):
        raise BadJob(f"a job is a JSON object, not {type(job).__name__}")
    body = json.dumps(job if job.get("id") is not None else {**job, "id": job_id})
    market = job.get("market")
    validator = validators.get(market) if isinstance(market, str) else None
    if validator is None:
        envelope = parse_job(body)  # a malformed envelope says so first
        known = ", ".join(sorted(validators)) or "none"
        raise BadJob(f"unknown market {envelope.market!r} (configured: {known})")
    return validator.check_body(body)


def check_jobs(
    jobs: Sequence[Any],
    validators: Mapping[str, JobValidator],
    ids: Callable[[int], str] | None = None,
) -> list[PreparedJob]:
    """Every job checked (one without an id gets `ids(index)`, default a new id), or
    `Refused` listing each bad one."""
    ids = ids or job_ids(None)
    if not jobs:
        raise BadRequest("no jobs in the request", field="body")
    if len(jobs) > MAX_JOBS:
        raise BadRequest(f"{len(jobs)} jobs in one request; at most {MAX_JOBS}", field="body")
    checked: list[PreparedJob] = []
    problems: list[FieldProblem] = []
    for index, job in enumerate(jobs):
        try:
            checked.append(_check_one(job, validators, ids(index)))
        except BadJob as exc:
            reason = str(exc)
            market = job.get("market") if isinstance(job, dict) else None
            field = _field(reason, market if isinstance(market, str) else None)
            problems.append(FieldProblem(index=index, field=field, reason=reason))
    if problems:
        raise Refused(problems)
    return checked


def idempotency_key(header: str | None, jobs: Sequence[Any]) -> str | None:
    """The request's key: the `Idempotency-Key` header, else the jobs' own ids when every job
    brought one; None when neither (each request is then new)."""
    if header is not None:
        if not _KEY.match(header):
            raise BadRequest(
                "Idempotency-Key must be 1-200 printable ASCII characters", field="Idempotency-Key"
            )
        return f"key:{header}"
    if jobs and all(isinstance(job, dict) and job.get("id") is not None for job in jobs):
        ids = "\x1f".join(f"{job.get('market')}:{job['id']}" for job in jobs)
        return "ids:" + hashlib.sha256(ids.encode()).hexdigest()
    return None


@dataclass(frozen=True)
class Sender:
    """What sending needs: SQS, the queue prefix, the status records and the deadline (s)."""

    sqs: SqsClient
    prefix: str
    records: JobTracker
    deadline: float


async def send_jobs(
    sender: Sender,
    lane: Lane,
    envelopes: Sequence[Envelope],
    *,
    already: Mapping[int, SentJob] | None = None,
    record: Record | None = None,
) -> JobsAccepted:
    """Send the jobs not in `already` to each market's lane queue (batches of 10), mark each
    `queued`, and `record` each batch as sent.

    Every queue is looked up first, so a missing one (`QueueMissing`) sends
    nothing. Once a batch is sent, no new batch starts past the sender's
    deadline, and an `SqsError` stops the sending: the answer then lists what
    was not sent (`unsent`) and why (`stopped`). An `SqsError` before anything
    was sent is raised.
    """
    started = time.monotonic()
    sent = dict(already or {})
    by_market: dict[str, list[int]] = defaultdict(list)
    for index, envelope in enumerate(envelopes):
        if index not in sent:
            by_market[envelope.market].append(index)
    queues = {market: QueueName(sender.prefix, market, lane).queue for market in by_market}
    urls = {market: await sender.sqs.queue_url(queue) for market, queue in queues.items()}
    stopped: str | None = None
    fresh = 0
    batches = [
        (market, indexes[at : at + BATCH_ENTRIES])
        for market, indexes in by_market.items()
        for at in range(0, len(indexes), BATCH_ENTRIES)
    ]
    for market, indexes in batches:
        if fresh and time.monotonic() - started >= sender.deadline:
            stopped = f"the request's deadline ({sender.deadline:g} s) passed"
            break
        messages = [
            OutgoingMessage(body=envelopes[i].body(), group_id=group_id(envelopes[i].seller))
            for i in indexes
        ]
        try:
            message_ids = await sender.sqs.send_batch(urls[market], messages)
        except SqsError as exc:
            if not fresh:
                raise
            stopped = f"SQS failed: {exc}"
            break
        jobs = [
            SentJob(
                index=index,
                id=str(envelopes[index].id),  # check_jobs gave every job an id
                market=market,
                queue=queues[market],
                message_id=message_id,
            )
            for index, message_id in zip(indexes, message_ids, strict=True)
        ]
        fresh += len(jobs)
        sent.update((job.index, job) for job in jobs)
        if record is not None:
            await record(jobs)
        await sender.records.update_many(
            {
                "id": job.id,
                "state": JobState.QUEUED.value,
                "market": job.market,
                "lane": lane.value,
                "kind": envelopes[job.index].kind,
                "seller": envelopes[job.index].seller,
                "message_id": job.message_id,
            }
            for job in jobs
        )
    return JobsAccepted(
        lane=lane.value,
        count=len(sent),
        jobs=[sent[index] for index in sorted(sent)],
        unsent=[index for index in range(len(envelopes)) if index not in sent],
        stopped=stopped,
    )


def fingerprint(lane: Lane, jobs: Sequence[Any]) -> str:
    """The request's content, to tell a true repeat from a key reused for something else."""
    canonical = json.dumps([lane.value, jobs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SendLog:
    """What a keyed request sent, job by job, in a Redis hash (`<claim key>:sent`): the
    request's fingerprint and one `SentJob` per index sent; it lives `ttl` seconds from its
    last write (LANES_IDEMPOTENCY_TTL)."""

    def __init__(self, redis: aioredis.Redis, *, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl

    async def read(self, key: str) -> tuple[str | None, dict[int, SentJob]]:
        """(the fingerprint, the jobs sent by index); (None, {}) when nothing was sent."""
        try:
            raw = await self._redis.hgetall(key)
        except RedisError as exc:
            raise BudgetUnavailable(f"idempotency store unreachable: {exc}") from exc
        fields = {_text(name): _text(value) for name, value in raw.items()}
        content = fields.pop(_CONTENT, None)
        return content, {int(i): SentJob.model_validate_json(job) for i, job in fields.items()}

    async def add(self, key: str, content: str, jobs: Sequence[SentJob]) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, _CONTENT, content)
                pipe.hset(key, mapping={str(job.index): job.model_dump_json() for job in jobs})
                pipe.expire(key, self._ttl)
                await pipe.execute()
        except RedisError as exc:
            raise BudgetUnavailable(f"idempotency store unreachable: {exc}") from exc

    async def drop(self, key: str) -> None:
        """Forget the log once the whole request is recorded done (best effort: it expires)."""
        try:
            await self._redis.delete(key)
        except RedisError:
            return


def _same_request(recorded: str | None, content: str) -> None:
    """`IdempotencyConflict` when the key's first request (`recorded`) was another one."""
    if recorded not in (None, content):
        raise IdempotencyConflict("this Idempotency-Key was used for a different request")


Send = Callable[[Mapping[int, SentJob], Record], Awaitable[JobsAccepted]]


async def send_once(
    guard: IdempotencyGuard, log: SendLog, key: str, content: str, send: Send
) -> tuple[JobsAccepted, bool]:
    """Send a keyed request's jobs once: (the answer, whether it replays a whole earlier one).

    `content` is the request's fingerprint: the same key with another request is
    a conflict, not a repeat. The claim (`IdempotencyGuard`, a Redis SET NX with
    a lease) makes concurrent repeats wait for the first one (409 after a
    while). `send(already, record)` sends what `already` lacks and records each
    batch in the send log; when every job is sent, the whole answer is recorded
    done, else the claim is dropped and a repeat sends the rest.
    """
    started = time.monotonic()
    while True:
        try:
            claim = await guard.begin(_NAMESPACE, "-", "jobs", key)
            break
        except ClaimBusy as busy:
            if time.monotonic() - started > _BUSY_WAIT_S:
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still being sent",
                    retry_after=busy.retry_after,
                ) from None
            await asyncio.sleep(min(busy.retry_after, 0.2))
    if claim.done is not None:
        _same_request(claim.done.get("fingerprint"), content)
        return JobsAccepted.model_validate(claim.done["answer"]), True
    sent_key = f"{claim.key}:sent"
    try:
        async with guard.held(claim):
            recorded, already = await log.read(sent_key)
            _same_request(recorded, content)

            async def record(jobs: Sequence[SentJob]) -> None:
                await log.add(sent_key, content, jobs)

            answer = await send(already, record)
    except (asyncio.CancelledError, Exception):
        await guard.abandon(claim)  # what was sent is in the log: a repeat sends the rest
        raise
    if answer.unsent:
        await guard.abandon(claim)
        return answer, False
    await guard.finish(claim, {"fingerprint": content, "answer": answer.model_dump()})
    await log.drop(sent_key)
    return answer, False
