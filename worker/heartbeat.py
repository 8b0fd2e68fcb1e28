"""The visibility heartbeat: held messages stay invisible while their job (or wait) runs.

Every message the daemon holds, buffered or running, is tracked. A third of
the visibility timeout after its last extension it is extended again by the
full timeout, in batches of up to 10 per queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import structlog

from worker.outcomes import Settler
from worker.queues import Delivery
from worker.sqs import SqsError

__all__ = ["Heartbeat"]

_log = structlog.get_logger("worker.heartbeat")


class Heartbeat:
    """Extends tracked messages to `visibility_timeout` every `visibility_timeout / 3` s."""

    def __init__(self, settler: Settler, visibility_timeout: int) -> None:
        self._settler = settler
        self._timeout = visibility_timeout
        self.period = max(1.0, visibility_timeout / 3)
        self._extended_at: dict[Delivery, float] = {}

    def track(self, delivery: Delivery) -> None:
        """Start holding `delivery` (call when it was received with `visibility_timeout`)."""
        self._extended_at[delivery] = time.monotonic()

    def forget(self, delivery: Delivery) -> None:
        self._extended_at.pop(delivery, None)

    @property
    def held(self) -> int:
        return len(self._extended_at)

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            await asyncio.sleep(self.period / 3)
            await self.beat()

    async def beat(self) -> None:
        """Extend every message whose last extension is a period old."""
        now = time.monotonic()
        due: dict[str, list[Delivery]] = defaultdict(list)
        for delivery, extended in list(self._extended_at.items()):
            if now - extended >= self.period:
                due[delivery.url].append(delivery)
        for url, deliveries in due.items():
            try:
                failed = set(
                    await self._settler.extend(
                        url, [(d.receipt, self._timeout) for d in deliveries]
                    )
                )
            except SqsError as exc:
                _log.warning("visibility heartbeat failed", queue=url, error=str(exc))
                continue
            for delivery in deliveries:
                if delivery not in self._extended_at:
                    continue  # settled meanwhile: its receipt may be gone, and that is fine
                if delivery.receipt in failed:
                    _log.warning(
                        "visibility heartbeat lost a message; it may run twice",
                        message_id=delivery.message.message_id,
                    )
                    self.forget(delivery)
                else:
                    self._extended_at[delivery] = now
