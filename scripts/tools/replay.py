"""`lanes replay`: move dead-lettered messages back to their lane queue.

Each batch is sent to the lane queue first and deleted from the dead-letter
queue only after the send succeeded, so an interrupted replay leaves every
message in one of the two queues (at worst in both, never in neither).
Messages the filters leave out are held invisible while the replay runs (so
each is looked at once) and released at the end.

One run is one pass over what the dead-letter queue held when it started. With the
cause not yet fixed, a moved message comes back as a new message (a new id) while the
run goes on: one with the body of a message moved in this run is held, not taken again,
and counted by its reason as "came back" (by the body, so a clock skew between this
machine and SQS cannot let it through); any other message sent to the dead-letter queue
after the run started (SQS's SentTimestamp) is held too, counted as "arrived", and left
for the next run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scripts.tools.sending import group_id
from worker.queues import (
    ATTR_ATTEMPTS,
    ATTR_ERROR,
    ATTR_FAILED_AT,
    ATTR_FIRST_ATTEMPT_AT,
    ATTR_REASON,
)
from worker.sqs import BATCH_ENTRIES, OutgoingMessage, SqsClient, SqsMessage

__all__ = ["DeadLetter", "ReplayFilter", "ReplayReport", "replay"]

_DEAD_LETTER_ATTRIBUTES = frozenset(
    {ATTR_ATTEMPTS, ATTR_ERROR, ATTR_FAILED_AT, ATTR_FIRST_ATTEMPT_AT, ATTR_REASON}
)
# Two empty polls in a row: the queue holds nothing more we have not looked at.
_EMPTY_POLLS = 2
_POLL_SECONDS = 1


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead letters to move; an empty filter moves them all."""

    kinds: frozenset[str] = frozenset()
    sellers: frozenset[str] = frozenset()
    reason: str | None = None  # a substring of the reason, any case
    older_than: timedelta | None = None
    newer_than: timedelta | None = None

    def matches(self, dead: DeadLetter) -> bool:
        return (
            (not self.kinds or dead.kind in self.kinds)
            and (not self.sellers or dead.seller in self.sellers)
            and (self.reason is None or self.reason.casefold() in dead.reason.casefold())
            and (self.older_than is None or dead.age >= self.older_than)
            and (self.newer_than is None or dead.age <= self.newer_than)
        )


@dataclass(frozen=True)
class DeadLetter:
    """A received dead-lettered message and what the operator filters and reads it by."""

    message: SqsMessage
    kind: str | None
    seller: str | None
    reason: str
    attempts: str
    age: timedelta

    @classmethod
    def of(cls, message: SqsMessage, now: datetime) -> DeadLetter:
        kind = seller = None
        try:
            body = json.loads(message.body)
        except (ValueError, RecursionError):
            body = None  # a poison body (bad JSON, a huge integer, deep nesting) is moved as is
        if isinstance(body, dict):
            kind = body.get("kind") if isinstance(body.get("kind"), str) else None
            seller = body.get("seller") if isinstance(body.get("seller"), str) else None
        attributes = message.message_attributes
        reason = attributes.get(ATTR_REASON) or "redriven by SQS (maxReceiveCount reached)"
        attempts = attributes.get(ATTR_ATTEMPTS) or str(message.receive_count)
        return cls(message, kind, seller, reason, attempts, now - _failed_at(message))

    def replayed(self) -> OutgoingMessage:
        """The original body and producer attributes, without ours: attempts start over."""
        kept = {
            name: value
            for name, value in self.message.message_attributes.items()
            if name not in _DEAD_LETTER_ATTRIBUTES
        }
        group = group_id(self.seller) if self.seller else None
        group = group or self.message.attributes.get("MessageGroupId")
        return OutgoingMessage(body=self.message.body, attributes=kept, group_id=group)


def _failed_at(message: SqsMessage) -> datetime:
    text = message.message_attributes.get(ATTR_FAILED_AT)
    if text:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return message.sent_at


@dataclass
class ReplayReport:
    examined: int = 0  # dead letters of before the run, each counted once
    moved: int = 0
    listed: list[DeadLetter] = field(default_factory=list)  # a dry run's matches
    left_in_dead_letter: int = 0  # moved, but the delete failed: in both queues
    came_back: Counter[str] = field(default_factory=Counter)  # reason -> moved ones back
    arrived: int = 0  # other messages dead-lettered during the run: left for the next


def _digest(body: str) -> bytes:
    return hashlib.sha256(body.encode()).digest()


class _Pace:
    """At most `rate` messages per second on average (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self._rate = rate
        self._started = time.monotonic()

    async def before(self, done: int) -> None:
        if self._rate is not None:
            await asyncio.sleep(max(0.0, self._started + done / self._rate - time.monotonic()))


async def replay(
    sqs: SqsClient,
    *,
    dead_letter_url: str,
    lane_url: str,
    only: ReplayFilter,
    max_messages: int | None = None,
    rate: float | None = None,
    dry_run: bool = False,
    visibility: int = 300,
) -> ReplayReport:
    """Move (or, on a dry run, list) the dead letters `only` matches, at most `max_messages`."""
    report = ReplayReport()
    started = datetime.now(UTC)
    held: dict[str, str] = {}  # message id -> receipt: released at the end
    seen: set[str] = set()
    moved_bodies: set[bytes] = set()
    pace = _Pace(rate)
    per_receive = BATCH_ENTRIES if rate is None else max(1, min(BATCH_ENTRIES, int(rate)))
    empty_polls = 0
    try:
        while max_messages is None or report.moved + len(report.listed) < max_messages:
            taken = report.moved + len(report.listed)
            left = per_receive if max_messages is None else min(per_receive, max_messages - taken)
            batch = await sqs.receive(
                dead_letter_url,
                max_messages=left,
                wait_seconds=_POLL_SECONDS,
                visibility_timeout=visibility,
            )
            empty_polls = 0 if batch else empty_polls + 1
            if empty_polls >= _EMPTY_POLLS:
                break
            now = datetime.now(UTC)
            chosen: list[DeadLetter] = []
            for message in batch:
                dead = DeadLetter.of(message, now)
                first_look = message.message_id not in seen
                seen.add(message.message_id)
                came_back = _digest(message.body) in moved_bodies
                if came_back or message.sent_at >= started:  # the next run's
                    if first_look and came_back:
                        report.came_back[dead.reason] += 1
                    elif first_look:
                        report.arrived += 1
                    held[message.message_id] = message.receipt_handle
                    continue
                report.examined += first_look
                if first_look and only.matches(dead) and len(chosen) < left:
                    chosen.append(dead)
                else:
                    held[message.message_id] = message.receipt_handle
            if dry_run:
                report.listed.extend(chosen)
                held.update(
                    {dead.message.message_id: dead.message.receipt_handle for dead in chosen}
                )
            elif chosen:
                await pace.before(report.moved)
                await sqs.send_batch(lane_url, [dead.replayed() for dead in chosen])
                failed = await sqs.delete_batch(
                    dead_letter_url, [dead.message.receipt_handle for dead in chosen]
                )
                report.moved += len(chosen)
                report.left_in_dead_letter += len(failed)
                moved_bodies.update(_digest(dead.message.body) for dead in chosen)
    finally:
        if held:
            await sqs.change_visibility_batch(
                dead_letter_url, [(receipt, 0) for receipt in held.values()]
            )
    return report
