"""worker.fairness: a lane's buffer starts its messages round robin across sellers, bounds a
seller's share of the buffer and of the lane's running jobs, and sets aside the rest."""

from __future__ import annotations

import itertools

from lanes.policy import Lane
from worker.fairness import (
    ASIDE_BY_RECEIVE,
    ASIDE_STEP,
    KEEP_AFTER_RECEIVES,
    RECALL_GUARD,
    SellerBuffer,
    seller_of,
)
from worker.queues import Delivery, QueueName
from worker.sqs import SqsMessage

_ids = itertools.count()
_QUEUE = QueueName("t", "acme", Lane.MEDIUM)


def delivery(seller: str, *, group: bool = True, receives: int = 1) -> Delivery:
    attributes = {"ApproximateReceiveCount": str(receives)}
    if group:
        attributes["MessageGroupId"] = seller
    body = f'{{"kind": "call", "market": "acme", "seller": "{seller}"}}'
    number = next(_ids)
    message = SqsMessage(f"m{number}", f"r{number}", body, attributes)
    return Delivery(message=message, queue=_QUEUE, url="http://q")


def test_seller_is_the_group_id_else_the_body_seller_else_empty() -> None:
    """The key is the MessageGroupId producers set, the body's seller without one, and "" for a
    body that names none (a poison message)."""
    assert seller_of(delivery("s-1").message) == "s-1"
    assert seller_of(delivery("s-2", group=False).message) == "s-2"
    assert seller_of(SqsMessage("m", "r", "{oops")) == ""
    assert seller_of(SqsMessage("m", "r", '["seller"]')) == ""


def test_starts_go_round_robin_across_sellers_not_in_arrival_order() -> None:
    """A backlog received first does not start first: each seller's first job starts before
    any seller's second."""
    buffer = SellerBuffer(100, floor=100, window=120, max_aside=120)
    for item in [delivery("noisy") for _ in range(5)] + [delivery(f"q{n}") for n in range(3)]:
        assert buffer.add(item, 0.0) == 0
    started = [buffer.pop(0.0)[0] for _ in range(8)]
    assert started[:4] == ["noisy", "q0", "q1", "q2"]
    assert started[4:] == ["noisy"] * 4


def test_the_seller_with_fewest_running_jobs_goes_next() -> None:
    """A seller's share of the lane's running slots is bounded the same way: while its jobs
    run, another seller's waiting job goes first, even if that seller started more recently."""
    buffer = SellerBuffer(100, floor=100, window=120, max_aside=120)
    for seller in ["a", "a", "a", "b", "b"]:
        buffer.add(delivery(seller), 0.0)
    assert [buffer.pop(0.0)[0] for _ in range(2)] == ["a", "b"]
    assert buffer.finished("b", 0.0) is None
    assert buffer.pop(0.0)[0] == "b"  # a still runs one, b none
    assert buffer.pop(0.0)[0] == "a"


def test_a_seller_beyond_its_share_is_set_aside() -> None:
    """Once the buffer is half full, one seller holds at most limit // (active sellers + 1)
    buffered messages; the rest are set aside, its k-th for k x ASIDE_STEP s, at most
    `max_aside` (unless recalled sooner)."""
    buffer = SellerBuffer(20, floor=20, window=60, max_aside=60)
    kept = [buffer.add(delivery("noisy"), 0.0) for _ in range(10)]
    assert kept == [0] * 10  # share 20 // 2
    asides = [buffer.add(delivery("noisy"), 0.0) for _ in range(100)]
    assert asides[:3] == [round(k * ASIDE_STEP) for k in (1, 2, 3)]
    assert asides == sorted(asides)
    assert asides[-1] == 60
    assert len(buffer) == 10
    assert buffer.set_aside == 100
    assert buffer.add(delivery("quiet"), 0.0) == 0  # another seller still gets in


def test_a_message_received_often_is_never_set_aside() -> None:
    """Setting aside costs a receive; a message already received many times is buffered
    regardless, so it never nears its queue's redrive count."""
    buffer = SellerBuffer(4, floor=4, window=60, max_aside=60)
    for _ in range(2):
        buffer.add(delivery("noisy"), 0.0)
    assert buffer.add(delivery("noisy"), 0.0) > 0
    assert buffer.add(delivery("noisy", receives=KEEP_AFTER_RECEIVES), 0.0) == 0


def test_a_lane_holds_no_more_than_it_started_in_a_visibility_timeout() -> None:
    """The bound is the lane's starts over the last visibility timeout (at least the floor,
    at most the capacity)."""
    buffer = SellerBuffer(1000, floor=10, window=30, max_aside=30)
    assert buffer.limit(0.0) == 10
    for n in range(50):
        buffer.add(delivery(f"s{n}"), 0.0)
    for _ in range(40):
        buffer.pop(1.0)
    assert buffer.limit(2.0) == 40
    assert buffer.limit(40.0) == 10  # those starts are a visibility timeout old


def test_off_starts_in_the_order_received() -> None:
    """Capacity 0 is the old FIFO: one queue, nothing set aside."""
    buffer = SellerBuffer.in_order()
    items = [delivery("noisy") for _ in range(30)] + [delivery("quiet")]
    assert [buffer.add(item, 0.0) for item in items] == [0] * 31
    assert [buffer.pop(0.0)[1] for _ in range(31)] == items
    assert buffer.drain() == []


def test_a_sellers_next_set_aside_message_is_recalled_when_it_has_nothing_left_here() -> None:
    """When a seller's last buffered message starts, and again when its last job here ends,
    its next set-aside message is made visible at once; while it holds one, nothing is."""
    buffer = SellerBuffer(4, floor=4, window=60, max_aside=60)
    first, second = delivery("q"), delivery("q")
    for item in (first, second):
        buffer.add(item, 0.0)
    aside = [delivery("q") for _ in range(3)]
    assert all(buffer.add(item, 0.0) > 0 for item in aside)
    buffer.pop(0.0)
    assert buffer.recall_for("q", 0.0) is None  # one still buffered
    buffer.pop(0.0)
    assert buffer.recall_for("q", 0.0) is aside[0]
    assert buffer.finished("q", 0.0) is None  # one still runs here
    assert buffer.finished("q", 0.0) is aside[1]  # its next job may run elsewhere


def test_an_idle_lane_recalls_the_earliest_set_aside_messages() -> None:
    """With slots free and nothing buffered, the messages set aside come back earliest first,
    across sellers; those due within RECALL_GUARD are (or soon will be) visible again anyway
    and are forgotten."""
    buffer = SellerBuffer(4, floor=4, window=60, max_aside=60)
    for seller in ("a", "a"):
        buffer.add(delivery(seller), 0.0)
    early = [delivery("a"), delivery("a")]
    for item in early:
        buffer.add(item, 0.0)
    buffer.add(delivery("b"), 1.0)  # b holds none: buffered
    late = [delivery("b"), delivery("a")]
    for item in late:
        buffer.add(item, 1.0)
    # due at 2 (a), 3 (b: its first), 4 (a), 7 (a: its third here)
    assert buffer.recall(1.5 - RECALL_GUARD, 3) == [early[0], late[0], early[1]]
    assert buffer.recall(7.0 - RECALL_GUARD, 10) == []  # the last is about to come back


def test_a_message_about_to_come_back_is_not_recalled() -> None:
    """A recall that lands after the message is visible again could make visible a message
    another worker has received since (a stale receipt handle SQS may accept): one due within
    RECALL_GUARD is left to come back on its own."""
    buffer = SellerBuffer(4, floor=4, window=60, max_aside=60)
    for _ in range(2):
        buffer.add(delivery("q"), 0.0)
    aside = delivery("q")
    assert buffer.add(aside, 0.0) == ASIDE_STEP  # due at ASIDE_STEP
    buffer.pop(0.0)
    buffer.pop(0.0)
    assert buffer.recall_for("q", ASIDE_STEP - RECALL_GUARD) is None
    assert buffer.recall(ASIDE_STEP - RECALL_GUARD, 10) == []


def test_a_message_whose_set_aside_failed_is_not_recalled() -> None:
    """A set-aside change SQS refused leaves the message visible when its receive's visibility
    ends, perhaps before its due here: it is forgotten, not recalled later."""
    buffer = SellerBuffer(4, floor=4, window=60, max_aside=60)
    for _ in range(2):
        buffer.add(delivery("q"), 0.0)
    failed, kept = delivery("q"), delivery("q")
    assert buffer.add(failed, 0.0) > 0
    assert buffer.add(kept, 0.0) > 0
    buffer.forget(failed)
    assert buffer.recall(0.0, 10) == [kept]


def test_below_half_full_a_seller_may_hold_more_than_its_share() -> None:
    """A few sellers' short runs of jobs are held whole while the buffer has room; setting
    aside starts only once it is half full."""
    buffer = SellerBuffer(100, floor=100, window=60, max_aside=60)
    items = [delivery(f"q{s}") for s in range(3) for _ in range(5)]
    assert [buffer.add(item, 0.0) for item in items] == [0] * 15


def test_a_seller_holding_most_of_the_lane_is_held_to_its_share_of_the_slots_at_once() -> None:
    """Far below half full, a seller with most of the lane's work here (buffered and running)
    holds at most floor // (active sellers + 1) of it: the rest is set aside, so the poller
    reads on past its backlog to the sellers behind it, who still get in."""
    buffer = SellerBuffer(1000, floor=8, window=60, max_aside=480)
    assert [buffer.add(delivery("noisy"), 0.0) for _ in range(4)] == [0] * 4  # 8 // 2
    for _ in range(4):
        buffer.pop(0.0)  # running now, still its work
    assert buffer.add(delivery("noisy"), 0.0) > 0
    assert len(buffer) == 0
    assert buffer.limit(0.0) == 8
    assert buffer.add(delivery("quiet"), 0.0) == 0
    buffer.finished("noisy", 0.0)
    assert buffer.add(delivery("noisy"), 0.0) > 0  # 3 of the 4 jobs here, share 8 // 3


def test_a_message_set_aside_again_waits_twice_as_long_each_time() -> None:
    """A backlog's surplus that comes back before the poller is past it is not received over
    and over: the most a message waits aside doubles with each receive before, up to
    `max_aside`; recalls still take the earliest due first."""
    buffer = SellerBuffer(4, floor=4, window=60, max_aside=200)
    for _ in range(2):
        buffer.add(delivery("noisy"), 0.0)
    for _ in range(100):  # the seller's k-th here waits k x ASIDE_STEP: past the caps below
        buffer.add(delivery("noisy"), 0.0)
    again = [delivery("noisy", receives=n) for n in (4, 3, 2, 1)]
    assert [buffer.add(item, 0.0) for item in again] == [200, 200, 120, 60]
    assert buffer.recall(0.0, 1000)[-3:] == [again[2], again[0], again[1]]


def test_a_set_aside_the_receive_already_made_costs_no_call() -> None:
    """A backlog's surplus set aside for about as long as the receive keeps it invisible
    anyway needs no visibility change; it counts as set aside until the receive's visibility
    ends, not later (a recall after that could reach a message another worker holds)."""
    buffer = SellerBuffer(4, floor=4, window=60, max_aside=480)
    for _ in range(2):
        buffer.add(delivery("noisy"), 0.0)
    for _ in range(100):  # k x ASIDE_STEP up to the cap, 60 s
        buffer.add(delivery("noisy"), 0.0, invisible_until=59.0)
    first = delivery("noisy")
    assert buffer.add(first, 1.0, invisible_until=59.0) == ASIDE_BY_RECEIVE  # due 61: a step
    assert buffer.add(delivery("noisy", receives=2), 1.0, invisible_until=59.0) == 120
    assert buffer.add(delivery("quiet"), 1.0, invisible_until=59.0) == 0
    assert first not in buffer.recall(59.0, 200)  # its due is 59, not 61
