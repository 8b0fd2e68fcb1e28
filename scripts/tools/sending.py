"""Sending a stream of messages in batches, a few batches in flight, with progress.

At most `in_flight` batches of 10 are held at once, so a stream of any length
is sent in bounded memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm  # type: ignore[import-untyped]

from worker.sqs import BATCH_ENTRIES, OutgoingMessage, SqsClient

__all__ = ["Progress", "group_id", "send_stream"]

IN_FLIGHT = 8
# SQS takes 1-128 ASCII letters, digits and punctuation as a MessageGroupId.
_GROUP_ID = re.compile(r"^[!-~]{1,128}$")


def group_id(seller: str) -> str:
    """The seller as a MessageGroupId (fair queues: one seller's backlog does not delay the
    others); a seller name SQS would refuse is replaced by a stable hash of it."""
    if _GROUP_ID.match(seller):
        return seller
    return "h-" + hashlib.sha256(seller.encode()).hexdigest()[:40]


class Progress:
    """A tqdm bar (rate, ETA) on a terminal; otherwise a plain count every tenth of the way."""

    def __init__(self, total: int, *, what: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self._what = what
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._bar: Any = None
        if self._stream.isatty():
            self._bar = tqdm(total=total, unit="msg", desc=what, file=self._stream)
        self._step = max(1, total // 10)
        self._next_report = self._step

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()

    @property
    def rate(self) -> float:
        return self.done / max(1e-9, time.monotonic() - self._started)

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self.done >= self._next_report or self.done == self.total:
            print(
                f"{self._what}: {self.done}/{self.total} ({self.rate:.0f}/s)",
                file=self._stream,
                flush=True,
            )
            self._next_report = self.done + self._step


def _batches(messages: Iterable[OutgoingMessage]) -> Iterator[list[OutgoingMessage]]:
    batch: list[OutgoingMessage] = []
    for message in messages:
        batch.append(message)
        if len(batch) == BATCH_ENTRIES:
            yield batch
            batch = []
    if batch:
        yield batch


async def _send(sqs: SqsClient, url: str, batch: list[OutgoingMessage]) -> int:
    await sqs.send_batch(url, batch)
    return len(batch)


async def send_stream(
    sqs: SqsClient,
    url: str,
    messages: Iterable[OutgoingMessage],
    progress: Progress,
    *,
    in_flight: int = IN_FLIGHT,
) -> int:
    """Send every message (batches of 10, `in_flight` batches at once); returns the count.

    A failed batch cancels the rest and raises its `SqsError`: what was sent
    before stays sent, so producers set ids that make a repeat harmless.
    """
    pending: set[asyncio.Task[int]] = set()

    async def settle() -> None:
        nonlocal pending
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            progress.update(task.result())

    try:
        for batch in _batches(messages):
            if len(pending) >= in_flight:
                await settle()
            pending.add(asyncio.create_task(_send(sqs, url, batch)))
        while pending:
            await settle()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return progress.done
