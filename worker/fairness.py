"""Fairness between the sellers of one lane (docs/DESIGN.md rule 14): a lane's buffer.

SQS hands a lane's messages out roughly in arrival order, so one seller's
20,000-job backlog would run before any other seller's job behind it. Each
lane of a worker holds up to `capacity` received messages (kept invisible by
the heartbeat) and starts them seller by seller:

- **Pick.** The seller with buffered work and the fewest running jobs of this
  lane goes next; among equals, the one whose last start is oldest. So starts
  go round robin across sellers, and a seller's share of the lane's running
  slots is bounded the same way (max-min fair).
- **Share.** Once the buffer is half full, a seller may hold
  `limit // (active sellers + 1)` buffered messages (at least 1); the `+ 1`
  keeps room for a seller not seen yet. Below half full anyone may add, so
  a few sellers' short runs of jobs are held whole, except a seller holding
  most of the lane's work here (buffered and running): from the start it may
  hold `floor // (active sellers + 1)` of it, buffered and running together.
  A lane bound by receiving (its jobs end before the next receive answers)
  never fills to half, so without this its poller would read one seller's
  backlog at the pace of its slots and never reach the sellers behind it.
- **Set aside.** A message received beyond its seller's share is made
  invisible again, the seller's k-th here for k x `ASIDE_STEP` s (at most
  the visibility timeout, doubled for each receive before, up to
  `max_aside`), so the poller reads on past a backlog to the other sellers'
  messages behind it: it receives while the buffer has room, not only while
  slots are free. One whose set-aside time ends where the receive's own
  visibility does (within a step) costs no call (`ASIDE_BY_RECEIVE`): a
  backlog's surplus is passed over at the price of its receive. No attempt
  is counted (the job did not run); a message already received
  `KEEP_AFTER_RECEIVES` times is buffered regardless, so setting aside never
  brings a message near its queue's redrive count (1000), and the doubling
  keeps a backlog's surplus from being received over and over while the
  poller is still passing it.
- **Recall.** Set-aside messages are made visible again at once when they are
  wanted: a seller's next one when its last buffered message starts, and
  again when its last job here ends (it comes back near the head of the
  queue, roughly in its place, to whichever worker receives it), and the
  earliest set aside when the lane could start more than it holds and its
  queue shows nothing more (a recalled message is older than the other
  sellers' and would be received before them). Only the
  worker that set a message aside can recall it, so the step bounds what a
  seller whose jobs moved to other workers waits: a few jobs come back within
  seconds, a backlog's after the visibility timeout or longer (at most
  `max_aside`, what the set-aside messages of a worker that died wait).
  A message within `RECALL_GUARD` of its due is not recalled but left to come
  back on its own: a recall reaching SQS after it is visible again could
  make visible a message another worker has received since (SQS may accept
  the stale receipt handle; moto did), and it would run twice.
- **Bound.** A lane holds at most what it started in the last visibility
  timeout (at least `floor`, the worker's slots), so a buffered message
  starts within about a visibility timeout.

`capacity = 0` turns this off: one queue, started in the order received.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter, deque

from worker.queues import Delivery
from worker.sqs import SqsMessage

__all__ = [
    "ASIDE_BY_RECEIVE",
    "ASIDE_STEP",
    "ASIDE_TIMEOUTS",
    "KEEP_AFTER_RECEIVES",
    "RECALL_GUARD",
    "SellerBuffer",
    "seller_of",
]

# A message received this often is never set aside again.
KEEP_AFTER_RECEIVES = 50
# Seconds a seller's k-th set-aside message stays aside per k (at most the visibility timeout).
ASIDE_STEP = 2.0
# `SellerBuffer.add`: set aside, and the receive's own visibility does it (no call).
ASIDE_BY_RECEIVE = -1
# Seconds before its due a set-aside message is no longer recalled: more than a recall takes
# to reach SQS (a batch's linger and one call, seconds under load), less than ASIDE_STEP.
RECALL_GUARD = 1.0
# The longest a message is set aside, in visibility timeouts (what a dead worker's set-aside
# messages wait at most; a live one recalls them when its lane has room).
ASIDE_TIMEOUTS = 8


def _due(item: tuple[float, Delivery]) -> float:
    return item[0]


def seller_of(message: SqsMessage) -> str:
    """The message's seller: its MessageGroupId (every producer sets the seller), else the
    body's `seller`, else "" (a body without one is poison and ends at once anyway)."""
    group = message.attributes.get("MessageGroupId")
    if group:
        return group
    try:
        body = json.loads(message.body)
    except (ValueError, RecursionError):
        return ""
    seller = body.get("seller") if isinstance(body, dict) else None
    return seller if isinstance(seller, str) else ""


class SellerBuffer:
    """One lane's received messages, started fairly across sellers (see the module text)."""

    def __init__(self, capacity: int, *, floor: int, window: int, max_aside: int) -> None:
        self.capacity = capacity
        self._floor = floor
        self._window = window  # the visibility timeout, seconds
        self._max_aside = max_aside
        # Seller -> buffered deliveries; dict order is the rotation (last started at the end).
        self._waiting: dict[str, deque[Delivery]] = {}
        self._count = 0
        self.running: Counter[str] = Counter()
        self._busy = 0  # the running jobs of every seller
        self._starts: deque[list[int]] = deque()  # [second, starts in it], last `window` s
        # Seller -> its set-aside messages not yet due, (due, delivery) in the order set aside.
        self._aside: dict[str, deque[tuple[float, Delivery]]] = {}
        self.set_aside = 0

    @classmethod
    def in_order(cls) -> SellerBuffer:
        """A buffer that starts messages in the order received (fairness off)."""
        return cls(0, floor=0, window=1, max_aside=1)

    @property
    def fair(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return self._count

    def key(self, message: SqsMessage) -> str:
        return seller_of(message) if self.fair else ""

    # -- bounds ----------------------------------------------------------------------------

    def limit(self, now: float) -> int:
        """Messages this lane may hold now."""
        self._prune(now)
        started = sum(count for _, count in self._starts)
        return min(self.capacity, max(self._floor, started))

    def _active(self) -> int:
        """Sellers with work buffered or running."""
        return len(self._waiting.keys() | +self.running)

    def share(self, now: float) -> int:
        """Buffered messages one seller may hold."""
        return max(1, self.limit(now) // (self._active() + 1))

    def _prune(self, now: float) -> None:
        oldest = int(now) - self._window
        while self._starts and self._starts[0][0] <= oldest:
            self._starts.popleft()

    # -- receiving -------------------------------------------------------------------------

    def add(self, delivery: Delivery, now: float, *, invisible_until: float = -math.inf) -> int:
        """Buffer `delivery` (0); or set it aside: the seconds to make it invisible for, or
        `ASIDE_BY_RECEIVE` if the receive keeps it invisible until `invisible_until` and
        that is where its set-aside time would end anyway (within one step): no call."""
        seller = self.key(delivery.message)
        held = self._waiting.get(seller)
        receives = delivery.message.receive_count
        if self.fair and receives < KEEP_AFTER_RECEIVES and self._surplus(seller, held, now):
            self.set_aside += 1
            aside = self._next_aside(seller, now) or self._aside.setdefault(seller, deque())
            # The k-th of a seller's messages set aside here: k x ASIDE_STEP s at most (due
            # times kept in order), so a quiet seller's few come back within seconds even if
            # no recall reaches them, and a backlog's after the visibility timeout; doubled
            # for each receive before, so a backlog's surplus is not received over and over.
            last = aside[-1][0] if aside else now
            most = min(self._max_aside, self._window * 2 ** min(max(0, receives - 1), 16))
            due = min(now + most, max(last, now + (len(aside) + 1) * ASIDE_STEP))
            by_receive = invisible_until <= due <= invisible_until + ASIDE_STEP
            if by_receive:
                due = invisible_until  # forgotten no later than it is visible again
            bisect.insort(aside, (due, delivery), key=_due)  # kept in due order
            return ASIDE_BY_RECEIVE if by_receive else math.ceil(due - now)
        self._waiting.setdefault(seller, deque()).append(delivery)
        self._count += 1
        return 0

    def _surplus(self, seller: str, held: deque[Delivery] | None, now: float) -> bool:
        """Whether `seller`'s next message is beyond its share here."""
        buffered = len(held) if held else 0
        if held and buffered >= self.share(now) and 2 * self._count >= self.limit(now):
            return True
        # A seller holding most of the lane's work here holds no more than its share of the
        # slots, half full or not, so the poller reads on past its backlog.
        mine = buffered + self.running[seller]
        return 2 * mine > self._count + self._busy and mine >= self.slots_share()

    def slots_share(self) -> int:
        """What a dominant seller may hold here, buffered and running together."""
        return max(1, self._floor // (self._active() + 1))

    def _next_aside(self, seller: str, now: float) -> deque[tuple[float, Delivery]] | None:
        """The seller's set-aside messages not yet due (those due are visible again and may
        be another worker's: forgotten), or None. A recall asks at `now + RECALL_GUARD`."""
        aside = self._aside.get(seller)
        while aside and aside[0][0] <= now:
            aside.popleft()
        if not aside:
            self._aside.pop(seller, None)
            return None
        return aside

    def forget(self, delivery: Delivery) -> None:
        """`delivery`'s set-aside change failed: it comes back when its receive's visibility
        ends, maybe before its due here, so it is no longer recalled."""
        aside = self._aside.get(self.key(delivery.message))
        if aside is not None:
            for index, (_, held) in enumerate(aside):
                if held is delivery:
                    del aside[index]
                    break

    def recall(self, now: float, wanted: float = math.inf) -> list[Delivery]:
        """Up to `wanted` set-aside messages to make visible now (all by default, at
        shutdown), earliest due first."""
        recalled: list[Delivery] = []
        soon = now + RECALL_GUARD
        while len(recalled) < wanted:
            heads = [(q[0][0], s) for s in list(self._aside) if (q := self._next_aside(s, soon))]
            if not heads:
                break
            recalled.append(self._aside[min(heads)[1]].popleft()[1])
        return recalled

    def recall_for(self, seller: str, now: float) -> Delivery | None:
        """`seller`'s next set-aside message, to make visible now, if it holds none buffered
        (its turn has come, whatever the estimate said). Not for a backlog (more set aside
        here than the worker has slots): the poller is still reading past its messages, and a
        recall would bring one back ahead of the sellers behind them, at every start."""
        if seller in self._waiting:
            return None
        aside = self._next_aside(seller, now + RECALL_GUARD)
        return aside.popleft()[1] if aside and len(aside) <= self._floor else None

    # -- starting --------------------------------------------------------------------------

    def pop(self, now: float) -> tuple[str, Delivery]:
        """The next delivery to start and its seller (the buffer must not be empty)."""
        seller = min(self._waiting, key=lambda s: self.running[s])  # first of equals: oldest
        held = self._waiting.pop(seller)
        delivery = held.popleft()
        if held:
            self._waiting[seller] = held  # to the end of the rotation
        self._count -= 1
        self.running[seller] += 1
        self._busy += 1
        second = int(now)
        if self._starts and self._starts[-1][0] == second:
            self._starts[-1][1] += 1
        else:
            self._starts.append([second, 1])
        return seller, delivery

    def finished(self, seller: str, now: float) -> Delivery | None:
        """A job of `seller` started from this buffer ended; returns the seller's next
        set-aside message to make visible now if the seller has nothing left here (its next
        job may have gone to another worker, which knows nothing of these)."""
        self.running[seller] -= 1
        self._busy -= 1
        if self.running[seller] > 0:
            return None
        del self.running[seller]
        return self.recall_for(seller, now)

    def drain(self) -> list[Delivery]:
        """Every buffered delivery, the buffer emptied (at shutdown)."""
        taken = [delivery for held in self._waiting.values() for delivery in held]
        self._waiting.clear()
        self._count = 0
        return taken
