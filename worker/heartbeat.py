"""The visibility heartbeat: held messages stay invisible while their job (or wait) runs.

The interface is two calls: `track(delivery)` when a message is received (it is then
held: buffered, waiting or running) and `forget(delivery)` when it is settled or handed
back. Whatever holds a message (a lane buffer, a fairness buffer, a running job) only
registers and unregisters it.

Each held message has its own deadline, the moment its visibility ends (counted from
before the call that set it). A message is extended by the full timeout once half of its
visibility is spent (a beat every sixth of it looks), most urgent first, in batches of
10 per queue sent concurrently (at most `_CONCURRENT_CALLS` at once), so one round over
1,000 messages takes a few batch calls' time, not a hundred in a row. A message whose
extension failed, or came back after its deadline, may have been received by another
worker meanwhile: it is logged as such (`heartbeat.may_run_twice`, with the message id).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass

import structlog

from worker.outcomes import Settler
from worker.queues import Delivery
from worker.sqs import BATCH_ENTRIES, SqsError

__all__ = ["Heartbeat"]

_log = structlog.get_logger("worker.heartbeat")
# Batch calls in flight at once: enough for 1,000 held messages in one round of calls,
# well under the SQS client's connection pool (64).
_CONCURRENT_CALLS = 16


@dataclass(slots=True)
class _Held:
    expires: float  # monotonic moment the message's visibility ends, at the latest
    warned: bool = False  # "may run twice" logged for this deadline


class Heartbeat:
    """Extends each tracked message to `visibility_timeout` once half of it is spent."""

    def __init__(self, settler: Settler, visibility_timeout: int) -> None:
        self._settler = settler
        self._timeout = visibility_timeout
        # Extended once this much of its visibility is left (half spent): a round of calls
        # has the other half, and each message costs SQS two extensions per timeout.
        self._lead = visibility_timeout / 2
        self._held: dict[Delivery, _Held] = {}
        self._calls = asyncio.Semaphore(_CONCURRENT_CALLS)
        self.slowest_round = 0.0  # seconds the longest beat took (shown by the bench)

    def track(self, delivery: Delivery) -> None:
        """Hold `delivery`, received just now with `visibility_timeout`."""
        self._held[delivery] = _Held(expires=time.monotonic() + self._timeout)

    def forget(self, delivery: Delivery) -> None:
        """Stop holding `delivery` (settled, or handed back)."""
        self._held.pop(delivery, None)

    @property
    def held(self) -> int:
        return len(self._held)

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            await asyncio.sleep(self._timeout / 6)
            await self.beat()

    async def beat(self) -> None:
        """Extend every message with half of its visibility left, or less."""
        started = time.monotonic()
        # By deadline alone: deliveries do not compare, and two deadlines may be equal.
        due = sorted(
            (
                (held.expires, delivery)
                for delivery, held in self._held.items()
                if held.expires - started <= self._lead
            ),
            key=lambda pair: pair[0],
        )
        if not due:
            return
        by_queue: dict[str, list[Delivery]] = defaultdict(list)
        for _, delivery in due:
            by_queue[delivery.url].append(delivery)
        batches = [
            (url, deliveries[i : i + BATCH_ENTRIES])
            for url, deliveries in by_queue.items()
            for i in range(0, len(deliveries), BATCH_ENTRIES)
        ]
        # Most urgent batches first: `due` is sorted, so each queue's first batch is.
        batches.sort(key=lambda batch: self._held[batch[1][0]].expires)
        await asyncio.gather(*(self._extend(url, batch) for url, batch in batches))
        self.slowest_round = max(self.slowest_round, time.monotonic() - started)

    async def _extend(self, url: str, deliveries: list[Delivery]) -> None:
        async with self._calls:
            sent = time.monotonic()
            try:
                failed = set(
                    await self._settler.extend(
                        url, [(d.receipt, self._timeout) for d in deliveries]
                    )
                )
            except SqsError as exc:
                # Tried again next beat; those already past their deadline are said so now.
                _log.warning("heartbeat.failed", queue=url, error=str(exc))
                now = time.monotonic()
                for delivery in deliveries:
                    held = self._held.get(delivery)
                    if held is not None and now > held.expires:
                        self._may_run_twice(delivery, "no extension before its deadline", held, now)
                return
        answered = time.monotonic()
        for delivery in deliveries:
            held = self._held.get(delivery)
            if held is None:
                continue  # settled meanwhile: its receipt may be gone, and that is fine
            if delivery.receipt in failed:
                # A receipt SQS refuses: the message was received again, or is gone.
                self._may_run_twice(delivery, "its extension failed", held, answered)
                self.forget(delivery)
                continue
            if answered > held.expires:
                self._may_run_twice(delivery, "extended after its deadline", held, answered)
            held.expires = sent + self._timeout
            held.warned = False

    @staticmethod
    def _may_run_twice(delivery: Delivery, why: str, held: _Held, now: float) -> None:
        if held.warned:
            return
        held.warned = True
        _log.warning(
            "heartbeat.may_run_twice",
            why=why,
            message_id=delivery.message.message_id,
            queue=delivery.queue.queue,
            late_seconds=round(max(0.0, now - held.expires), 3),
        )
