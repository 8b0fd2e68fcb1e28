"""One received message and the lane queue it came from."""

from __future__ import annotations

from dataclasses import dataclass

from worker.queues import QueueName
from worker.sqs import SqsMessage

__all__ = ["Delivery"]


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """`message` as received from `queue` (whose URL is `url`); hashed by identity."""

    message: SqsMessage
    queue: QueueName
    url: str

    @property
    def receipt(self) -> str:
        return self.message.receipt_handle
