"""Jobs sent through the HTTP API: checked exactly as `lanes enqueue` checks them, sent to
their lane queues only when every one is good, once per idempotency key.

The checks are `scripts.validate` (the envelope, then the market's own); a job
without an `id` gets one, so its status can be read back and a side-effect job
runs at most once (docs/DESIGN.md rule 11).
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

from lanes.policy import Lane
from scripts.api_models import JobProblem, JobsAccepted, JobState, SentJob
from scripts.sending import group_id
from scripts.validate import BadJob, JobValidator
from worker.envelope import Envelope, PoisonMessage, parse_envelope
from worker.idempotency import ClaimBusy, IdempotencyGuard
from worker.queues import QueueName
from worker.sqs import BATCH_BYTES, OutgoingMessage, SqsClient
from worker.tracking import JobTracker

__all__ = [
    "MAX_JOBS",
    "BadRequest",
    "IdempotencyConflict",
    "Refused",
    "Sender",
    "check_jobs",
    "fingerprint",
    "idempotency_key",
    "new_job_id",
    "send_jobs",
    "send_once",
]

# One request holds at most this many jobs (each up to SQS's 1 MiB): the HTTP body
# limit of a Lambda behind API Gateway (6 MB) is the tighter bound in practice.
MAX_JOBS = 1000
# The namespace of request keys in the idempotency store: never a market name
# (those start with a letter or digit), so never a worker's job key.
_NAMESPACE = "_api"
_KEY = re.compile(r"^[!-~]{1,200}$")
# How long a repeat waits for the first request (still sending) before answering 409.
_BUSY_WAIT_S = 10.0
# "source: dotted.where: message", the shape of `lanes.config.describe_validation_error`.
_WHERE = re.compile(r"^(?P<source>message|[a-z][a-z0-9_]* payload): (?P<where>[^:]+): ")
_FIELDS = (
    ("unknown market", "market"),
    ("market is ", "market"),
    ("kind ", "kind"),
    ("unknown endpoint", "payload.endpoint"),
    ("budget is counted per seller", "seller"),
)


class Refused(ValueError):
    """Some jobs are bad: nothing was sent."""

    def __init__(self, problems: list[JobProblem]) -> None:
        super().__init__(f"{len(problems)} job(s) refused; nothing was sent")
        self.problems = problems


class BadRequest(ValueError):
    """The request itself is wrong (empty, too many jobs, a malformed key)."""


class IdempotencyConflict(ValueError):
    """The key was used for a different request, or its first request is still sending."""

    def __init__(self, text: str, *, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.retry_after = retry_after


def new_job_id() -> str:
    return uuid.uuid4().hex


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


def _check_one(job: Any, validators: Mapping[str, JobValidator]) -> Envelope:
    """`JobValidator.check_body`, with the validator picked by the job's market."""
    if not isinstance(job, dict):
        raise BadJob(f"a job is a JSON object, not {type(job).__name__}")
    try:
        envelope = parse_envelope(json.dumps(job))
    except PoisonMessage as exc:
        raise BadJob(exc.reason) from None
    validator = validators.get(envelope.market)
    if validator is None:
        known = ", ".join(sorted(validators)) or "none"
        raise BadJob(f"unknown market {envelope.market!r} (configured: {known})")
    envelope = validator.check_envelope(envelope)
    if envelope.id is None:
        envelope = envelope.model_copy(update={"id": new_job_id()})
    size = len(envelope.body().encode())
    if size > BATCH_BYTES:
        raise BadJob(f"the message would be {size} bytes; SQS takes at most {BATCH_BYTES}")
    return envelope


def check_jobs(jobs: Sequence[Any], validators: Mapping[str, JobValidator]) -> list[Envelope]:
    """Every job as an envelope (with an id), or `Refused` listing each bad one."""
    if not jobs:
        raise BadRequest("no jobs in the request")
    if len(jobs) > MAX_JOBS:
        raise BadRequest(f"{len(jobs)} jobs in one request; at most {MAX_JOBS}")
    envelopes: list[Envelope] = []
    problems: list[JobProblem] = []
    for index, job in enumerate(jobs):
        try:
            envelopes.append(_check_one(job, validators))
        except BadJob as exc:
            reason = str(exc)
            market = job.get("market") if isinstance(job, dict) else None
            field = _field(reason, market if isinstance(market, str) else None)
            problems.append(JobProblem(index=index, field=field, reason=reason))
    if problems:
        raise Refused(problems)
    return envelopes


def idempotency_key(header: str | None, jobs: Sequence[Any]) -> str | None:
    """The request's key: the `Idempotency-Key` header, else the jobs' own ids when every job
    (as sent, checked) brought one; None when neither (each request is then new)."""
    if header is not None:
        if not _KEY.match(header):
            raise BadRequest("Idempotency-Key must be 1-200 printable ASCII characters")
        return f"key:{header}"
    if all(job.get("id") is not None for job in jobs):
        ids = "\x1f".join(f"{job['market']}:{job['id']}" for job in jobs)
        return "ids:" + hashlib.sha256(ids.encode()).hexdigest()
    return None


@dataclass(frozen=True)
class Sender:
    """What sending needs: SQS, the queue prefix and the status records."""

    sqs: SqsClient
    prefix: str
    records: JobTracker


async def send_jobs(sender: Sender, lane: Lane, envelopes: Sequence[Envelope]) -> JobsAccepted:
    """Send to each market's lane queue (batches of 10) and mark every job `queued`.

    Raises `QueueMissing` or `SqsError`; what was sent before a failure stays sent,
    and its jobs carry ids, so a repeat is harmless (rule 11).
    """
    by_market: dict[str, list[int]] = defaultdict(list)
    for index, envelope in enumerate(envelopes):
        by_market[envelope.market].append(index)
    sent: dict[int, SentJob] = {}
    for market, indexes in by_market.items():
        queue = QueueName(sender.prefix, market, lane).queue
        url = await sender.sqs.queue_url(queue)
        messages = [
            OutgoingMessage(
                body=envelopes[index].body(), group_id=group_id(envelopes[index].seller)
            )
            for index in indexes
        ]
        ids = await sender.sqs.send_batch(url, messages)
        for index, message_id in zip(indexes, ids, strict=True):
            envelope = envelopes[index]
            assert envelope.id is not None  # check_jobs gave every job an id
            sent[index] = SentJob(
                index=index, id=envelope.id, market=market, queue=queue, message_id=message_id
            )
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
        for job in sent.values()
    )
    jobs = [sent[index] for index in range(len(envelopes))]
    return JobsAccepted(lane=lane.value, count=len(jobs), jobs=jobs)


def fingerprint(lane: Lane, jobs: Sequence[Any]) -> str:
    """The request's content, to tell a true repeat from a key reused for something else."""
    canonical = json.dumps([lane.value, jobs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def send_once(
    guard: IdempotencyGuard,
    key: str,
    content: str,
    send: Callable[[], Awaitable[JobsAccepted]],
) -> tuple[JobsAccepted, bool]:
    """Run `send()` once per `key`: (the answer, whether it replays the first one).

    `content` is the request's fingerprint: the same key with another request is a
    conflict, not a replay.
    The claim is a Redis SET NX (`IdempotencyGuard`), so two concurrent repeats
    send once: the second waits for the first answer (or gets 409 after a while).
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
        if claim.done.get("fingerprint") != content:
            raise IdempotencyConflict("this Idempotency-Key was used for a different request")
        return JobsAccepted.model_validate(claim.done["answer"]), True
    try:
        async with guard.held(claim):
            answer: JobsAccepted = await send()
    except (asyncio.CancelledError, Exception):
        await guard.abandon(claim)  # not sent (or not all): a repeat may try again
        raise
    await guard.finish(claim, {"fingerprint": content, "answer": answer.model_dump()})
    return answer, False
