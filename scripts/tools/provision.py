"""`lanes provision`: each market's lane queues and dead-letter queues, safe to run again.

A queue that exists is compared with what the settings want; a difference is
reported and left alone unless the operator asks for `--update` (changing a
live queue's redrive or retention is a decision, not a side effect). Redis gets
each hash slot's epoch (`lanes.epoch`), so that a budget first used a window
after provisioning starts with an empty past (docs/DESIGN.md rule 10).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from lanes.epoch import epoch_keys, mark_epochs
from lanes.errors import BudgetUnavailable
from lanes.policy import Lane
from lanes.store import RedisStore
from worker.queues import QueueName
from worker.sqs import QueueMissing, SqsClient

__all__ = [
    "DEAD_LETTER_RETENTION",
    "LANE_RETENTION",
    "REDRIVE_UNTIL_SUCCESS",
    "QueueReport",
    "dead_letter_attributes",
    "lane_attributes",
    "mark_redis",
    "provision",
]

LANE_RETENTION = 4 * 86_400  # SQS's default
DEAD_LETTER_RETENTION = 14 * 86_400  # SQS's maximum: longer than the source's
DEAD_LETTER_VISIBILITY = 60  # `lanes replay` sets its own on receive
# SQS's highest maxReceiveCount, for every lane: the worker counts attempts itself and
# dead-letters with a reason; waits (Redis down, budget, a sink) may release a message
# many times and must never have it redriven without one (docs/DESIGN.md rule 12).
# Only a crash loop this long is redriven.
REDRIVE_UNTIL_SUCCESS = 1000


@dataclass(frozen=True)
class QueueReport:
    queue: str
    state: str  # "created", "ok (unchanged)", "differs: ...", "updated: ..."


def lane_attributes(visibility_timeout: int, dead_letter_arn: str) -> dict[str, str]:
    redrive = {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": REDRIVE_UNTIL_SUCCESS}
    return {
        "VisibilityTimeout": str(visibility_timeout),
        "MessageRetentionPeriod": str(LANE_RETENTION),
        "RedrivePolicy": json.dumps(redrive, separators=(",", ":")),
    }


def dead_letter_attributes() -> dict[str, str]:
    return {
        "VisibilityTimeout": str(DEAD_LETTER_VISIBILITY),
        "MessageRetentionPeriod": str(DEAD_LETTER_RETENTION),
    }


def _comparable(name: str, value: str) -> object:
    if name == "RedrivePolicy":
        policy = json.loads(value) if value else {}
        return (policy.get("deadLetterTargetArn"), int(policy.get("maxReceiveCount", 0)))
    return value


def _differences(have: Mapping[str, str], want: Mapping[str, str]) -> list[str]:
    return [
        f"{name} is {have.get(name, '(unset)')}, settings want {value}"
        for name, value in want.items()
        if _comparable(name, have.get(name, "")) != _comparable(name, value)
    ]


async def _ensure(
    sqs: SqsClient, name: str, want: dict[str, str], *, update: bool
) -> tuple[QueueReport, str]:
    """The queue as wanted (created if missing); returns its report and URL."""
    try:
        url = await sqs.queue_url(name)
    except QueueMissing:
        return QueueReport(name, "created"), await sqs.create_queue(name, want)
    differences = _differences(await sqs.attributes(url), want)
    if not differences:
        return QueueReport(name, "ok (unchanged)"), url
    if not update:
        return QueueReport(name, "differs: " + "; ".join(differences) + " (left as is)"), url
    await sqs.set_attributes(url, want)
    return QueueReport(name, "updated: " + "; ".join(differences)), url


async def provision(
    sqs: SqsClient,
    *,
    prefix: str,
    markets: Iterable[str],
    visibility_timeout: int,
    update: bool = False,
) -> list[QueueReport]:
    """Create or check every lane queue and its dead-letter queue (dead-letter first)."""
    reports: list[QueueReport] = []
    for market in markets:
        for lane in Lane:
            names = QueueName(prefix, market, lane)
            report, dlq_url = await _ensure(
                sqs, names.dead_letter, dead_letter_attributes(), update=update
            )
            reports.append(report)
            arn = (await sqs.attributes(dlq_url, ("QueueArn",)))["QueueArn"]
            want = lane_attributes(visibility_timeout, arn)
            reports.append((await _ensure(sqs, names.queue, want, update=update))[0])
    return reports


async def mark_redis(redis_url: str) -> str:
    """Every hash slot's epoch, written where missing or left by another server run;
    returns what was done, for the report."""
    try:
        async with RedisStore(redis_url) as store:
            written = await mark_epochs(store.client)
    except (RedisError, OSError) as exc:
        raise BudgetUnavailable(f"redis unavailable: {exc}") from exc
    return f"{written} written, {len(epoch_keys()) - written} kept"
