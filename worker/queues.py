"""Queue names: `{prefix}-{market}-{lane}` and its dead-letter queue `...-dlq`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from lanes.policy import Lane
from worker.sqs import SqsMessage

__all__ = [
    "ATTR_ATTEMPTS",
    "ATTR_ERROR",
    "ATTR_FAILED_AT",
    "ATTR_FIRST_ATTEMPT_AT",
    "ATTR_REASON",
    "DLQ_SUFFIX",
    "Delivery",
    "QueueName",
    "lane_of_queue",
]

DLQ_SUFFIX = "-dlq"

# String message attributes written on every dead-lettered message.
ATTR_REASON = "lanes.reason"  # one line: why it was dead-lettered
ATTR_ATTEMPTS = "lanes.attempts"  # attempts made (a whole number)
ATTR_ERROR = "lanes.error"  # the last error, one line
ATTR_FAILED_AT = "lanes.failed_at"  # ISO 8601 UTC: the last attempt
# ISO 8601 UTC: the first receive of the message in its lane (SQS's
# ApproximateFirstReceiveTimestamp, which the dead-letter copy would not carry)
ATTR_FIRST_ATTEMPT_AT = "lanes.first_attempt_at"


@dataclass(frozen=True, slots=True)
class QueueName:
    prefix: str
    market: str
    lane: Lane

    @property
    def queue(self) -> str:
        return f"{self.prefix}-{self.market}-{self.lane.value}"

    @property
    def dead_letter(self) -> str:
        return f"{self.queue}{DLQ_SUFFIX}"


def lane_of_queue(
    name_or_arn: str, *, prefix: str, markets: Collection[str] | None = None
) -> QueueName:
    """Parse a lane queue's name (or an ARN ending in it, as Lambda's `eventSourceARN`).

    Parsed against the configured `prefix` (which may hold hyphens, `shop-prod`)
    and, when given, the known `markets`: never by splitting on the first '-'.
    """
    name = name_or_arn.rsplit(":", 1)[-1]
    if name.endswith(DLQ_SUFFIX):
        raise ValueError(f"{name!r} is a dead-letter queue, not a lane queue")
    head, sep, lane = name.rpartition("-")
    market = head.removeprefix(f"{prefix}-") if head.startswith(f"{prefix}-") else ""
    if not (sep and market) or lane not in Lane._value2member_map_:
        raise ValueError(f"{name!r} is not a lane queue name ({prefix}-{{market}}-{{lane}})")
    if markets is not None and market not in markets:
        known = ", ".join(sorted(markets)) or "none"
        raise ValueError(f"queue {name!r} names market {market!r}, not configured ({known})")
    return QueueName(prefix=prefix, market=market, lane=Lane(lane))


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """`message` as received from `queue` (whose URL is `url`); hashed by identity.

    `never_ran`: every earlier delivery of the message was set aside unstarted by this
    worker (the daemon's dispatcher remembers), so no result can be kept for it.
    """

    message: SqsMessage
    queue: QueueName
    url: str
    never_ran: bool = False

    @property
    def receipt(self) -> str:
        return self.message.receipt_handle
