"""Carrying out an outcome on SQS: delete, release (visibility) and dead-letter.

Deletes and visibility changes from many jobs are coalesced into batches of
up to 10 per queue; every batch's per-entry failures are read and reported
back to the job that asked. Dead-lettering writes to the dead-letter queue
first; only a confirmed send lets the caller delete the original.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

import structlog

from lanes.logs import redact_url
from worker.delivery import Delivery
from worker.outcomes import Outcome
from worker.queues import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_FAILED_AT, ATTR_REASON
from worker.sqs import BATCH_ENTRIES, OutgoingMessage, SqsClient, SqsError

__all__ = ["Settler", "dead_letter_message"]

Item = TypeVar("Item")
_MAX_ATTRIBUTES = 10
_MAX_ATTRIBUTE_TEXT = 1000
_log = structlog.get_logger("worker.settle")


def _clip(text: str) -> str:
    one_line = redact_url(" ".join(text.split()))  # docs/DESIGN.md rule 8
    return one_line[:_MAX_ATTRIBUTE_TEXT]


def dead_letter_message(delivery: Delivery, outcome: Outcome) -> OutgoingMessage:
    """The original body and attributes plus why, how often and when it failed."""
    ours = {
        ATTR_REASON: _clip(outcome.reason) or outcome.label,
        ATTR_ATTEMPTS: str(outcome.attempts),
        ATTR_ERROR: _clip(outcome.error or outcome.reason) or outcome.label,
        ATTR_FAILED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # SQS allows 10 message attributes: ours win, the producer's keep what room is left.
    theirs = {
        name: value
        for name, value in sorted(delivery.message.message_attributes.items())
        if name not in ours
    }
    kept = dict(list(theirs.items())[: _MAX_ATTRIBUTES - len(ours)])
    return OutgoingMessage(body=delivery.message.body, attributes={**kept, **ours})


class _Batcher(Generic[Item]):
    """Coalesces single calls into one batch call per queue (at most 10, `linger` seconds)."""

    def __init__(
        self,
        call: Callable[[str, Sequence[Item]], Awaitable[list[str]]],
        receipt_of: Callable[[Item], str],
        linger: float,
    ) -> None:
        self._call = call
        self._receipt_of = receipt_of
        self._linger = linger
        self._pending: dict[str, list[tuple[Item, asyncio.Future[bool]]]] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, url: str, item: Item) -> bool:
        """True once the call succeeded for `item`; False if SQS reported it failed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self._pending.setdefault(url, [])
        queue.append((item, future))
        if len(queue) >= BATCH_ENTRIES:
            self._start_flush(url, 0.0)
        elif len(queue) == 1:
            self._start_flush(url, self._linger)
        return await asyncio.shield(future)

    def _start_flush(self, url: str, delay: float) -> None:
        task = asyncio.create_task(self._flush(url, delay))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, url: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        batch = self._pending.pop(url, [])[:]
        if not batch:
            return
        try:
            failed = set(await self._call(url, [item for item, _ in batch]))
        except SqsError as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for item, future in batch:
            if not future.done():
                future.set_result(self._receipt_of(item) not in failed)

    async def drain(self) -> None:
        """Flush whatever is pending now (at shutdown)."""
        for url in list(self._pending):
            self._start_flush(url, 0.0)
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


def _receipt(item: tuple[str, int]) -> str:
    return item[0]


def _same(receipt: str) -> str:
    return receipt


class Settler:
    """Deletes, releases and dead-letters messages; the SQS client is borrowed, not owned."""

    def __init__(self, sqs: SqsClient, *, linger: float = 0.05) -> None:
        self._sqs = sqs
        self._deletes: _Batcher[str] = _Batcher(sqs.delete_batch, _same, linger)
        self._visibility: _Batcher[tuple[str, int]] = _Batcher(
            sqs.change_visibility_batch, _receipt, linger
        )

    async def delete(self, delivery: Delivery) -> bool:
        """Delete; False (logged) when SQS no longer knows the receipt or the call failed."""
        try:
            if await self._deletes.submit(delivery.url, delivery.receipt):
                return True
            _log.warning("delete failed: receipt expired, the message may run again")
        except SqsError as exc:
            _log.warning("delete failed, the message may run again", error=str(exc))
        return False

    async def release(self, delivery: Delivery, seconds: int) -> bool:
        """Make the message visible again in `seconds` (0 = now); False (logged) on failure."""
        try:
            if await self._visibility.submit(delivery.url, (delivery.receipt, seconds)):
                return True
            _log.warning("release failed: receipt expired, the message returns on its own")
        except SqsError as exc:
            _log.warning("release failed, the message returns on its own", error=str(exc))
        return False

    async def extend(self, url: str, items: Sequence[tuple[str, int]]) -> list[str]:
        """Extend many messages' visibility at once (the heartbeat); returns failed receipts."""
        return await self._sqs.change_visibility_batch(url, items)

    async def dead_letter(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Send the message to its lane's dead-letter queue; True only once SQS accepted it."""
        try:
            url = await self._sqs.queue_url(delivery.queue.dead_letter)
            await self._sqs.send_batch(url, [dead_letter_message(delivery, outcome)])
        except SqsError as exc:
            _log.error("dead-letter send failed, the message stays in its queue", error=str(exc))
            return False
        return True

    async def drain(self) -> None:
        """Flush pending deletes and releases (at shutdown)."""
        await self._deletes.drain()
        await self._visibility.drain()
