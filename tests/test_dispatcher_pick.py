"""worker.daemon's slot rules and weighted pick, without queues (pure bookkeeping)."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from lanes.policy import Lane, LanePolicies
from worker.daemon import Dispatcher, LaneSource
from worker.outcomes import Settler
from worker.processing import JobProcessor
from worker.queues import Delivery, QueueName
from worker.sqs import SqsClient, SqsMessage


def _dispatcher(concurrency: int, policies: LanePolicies, depth: dict[Lane, int]) -> Dispatcher:
    sqs = SqsClient(endpoint_url="http://127.0.0.1:9")  # never opened: nothing is sent
    sources = []
    for lane in Lane:
        source = LaneSource(
            queue=QueueName("p", "acme", lane), url=lane.value, policy=policies[lane]
        )
        for n in range(depth.get(lane, 0)):
            message = SqsMessage(message_id=f"{lane}-{n}", receipt_handle="r", body="{}")
            source.buffer.add(Delivery(message=message, queue=source.queue, url=source.url), 0.0)
        sources.append(source)
    return Dispatcher(
        sqs=sqs,
        processor=cast(JobProcessor, None),
        settler=Settler(sqs),
        sources=sources,
        concurrency=concurrency,
        visibility_timeout=30,
        wait_seconds=1,
        grace_seconds=1,
    )


def _picks(dispatcher: Dispatcher, count: int) -> Counter[str]:
    picked: Counter[str] = Counter()
    for _ in range(count):
        source = dispatcher._pick()
        assert source is not None
        source.buffer.pop(0.0)
        picked[source.queue.lane.value] += 1
    return picked


def _no_floors(**fields: Any) -> LanePolicies:
    return LanePolicies.model_validate({lane.value: {"min_slots": 0, **fields} for lane in Lane})


def test_weighted_pick_is_six_three_one() -> None:
    """With every lane waiting, 20 picks go 12 high, 6 medium, 2 low."""
    dispatcher = _dispatcher(32, _no_floors(), {lane: 50 for lane in Lane})
    assert _picks(dispatcher, 20) == {"high": 12, "medium": 6, "low": 2}


def test_empty_lanes_fall_through() -> None:
    """With high empty, medium and low share the picks 3 : 1; with only low, low gets all."""
    dispatcher = _dispatcher(32, _no_floors(), {Lane.MEDIUM: 50, Lane.LOW: 50})
    assert _picks(dispatcher, 8) == {"medium": 6, "low": 2}
    only_low = _dispatcher(32, _no_floors(), {Lane.LOW: 5})
    assert _picks(only_low, 5) == {"low": 5}
    assert only_low._pick() is None


def test_floor_keeps_a_slot_for_low_under_a_high_flood() -> None:
    """Concurrency 4, floors 1: high may fill 2 slots (the others' floors are kept), and low
    is picked for its floor slot even though high weighs six times more."""
    dispatcher = _dispatcher(4, LanePolicies(), {Lane.HIGH: 50, Lane.LOW: 50})
    high, medium, low = dispatcher.sources
    high.running = 2
    assert dispatcher._startable(high) == 0
    assert dispatcher._pick() is low
    low.running = 1
    assert dispatcher._pick() is None  # the last slot is medium's floor
    assert dispatcher._room(medium) == 1


def test_floors_off_when_they_do_not_fit() -> None:
    """Concurrency no larger than the sum of floors turns floors off instead of deadlocking."""
    dispatcher = _dispatcher(2, LanePolicies(), {Lane.HIGH: 5})
    assert [source.floor for source in dispatcher.sources] == [0, 0, 0]
    assert _picks(dispatcher, 1) == {"high": 1}


def _received(message_id: str, receives: int) -> SqsMessage:
    attributes = {"ApproximateReceiveCount": str(receives)}
    return SqsMessage(message_id=message_id, receipt_handle="r", body="{}", attributes=attributes)


def test_a_delivery_never_ran_only_while_each_before_it_was_set_aside_here() -> None:
    """A first delivery never ran; a redelivery did not either when this worker set aside
    every delivery before it; a delivery it did not see (a receive count skipped: another
    worker's) or one it started breaks the chain, and so does a message forgotten."""
    dispatcher = _dispatcher(4, _no_floors(), {})
    source = dispatcher.sources[0]

    def receive(message_id: str, receives: int, *, set_aside: bool) -> bool:
        message = _received(message_id, receives)
        delivery = dispatcher._delivery(source, message)
        if set_aside and delivery.never_ran:
            dispatcher._remember_unrun(message)
        return delivery.never_ran

    assert receive("a", 1, set_aside=True)
    assert receive("a", 2, set_aside=True)
    assert receive("a", 3, set_aside=False)  # started: not remembered
    assert not receive("a", 4, set_aside=False)
    assert receive("b", 1, set_aside=True)
    assert not receive("b", 3, set_aside=True)  # its second delivery went elsewhere
    assert not receive("b", 4, set_aside=False)
    assert not receive("c", 2, set_aside=False)  # received before, not here
