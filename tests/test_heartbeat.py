"""worker.heartbeat: a held message stays invisible past its visibility timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog

from lanes.policy import Lane
from worker.heartbeat import Heartbeat
from worker.outcomes import Settler
from worker.queues import Delivery, QueueName
from worker.sqs import OutgoingMessage, SqsClient


@pytest.mark.slow
async def test_held_message_stays_invisible_and_returns_once_forgotten(
    sqs: SqsClient, make_queue: Callable[..., Awaitable[str]]
) -> None:
    """With a 2 s visibility timeout, a tracked message is still invisible after 4 s; once
    forgotten it comes back on its own."""
    url = await make_queue(visibility_timeout=2)
    await sqs.send_batch(url, [OutgoingMessage(body="held")])
    (message,) = await sqs.receive(url, max_messages=1, wait_seconds=1, visibility_timeout=2)
    delivery = Delivery(message=message, queue=QueueName("p", "acme", Lane.HIGH), url=url)
    heartbeat = Heartbeat(Settler(sqs), visibility_timeout=2)
    heartbeat.track(delivery)
    beating = asyncio.create_task(heartbeat.run())
    try:
        await asyncio.sleep(4.0)
        assert await sqs.receive(url, max_messages=1, wait_seconds=0) == []
    finally:
        heartbeat.forget(delivery)
        beating.cancel()
    (back,) = await sqs.receive(url, max_messages=1, wait_seconds=5)
    assert back.message_id == message.message_id


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "count",
    [
        pytest.param(300, marks=pytest.mark.slow),
        # The case, 1,000 slots; moto on a loaded 2-core host takes minutes to hand
        # out 1,000 messages, so it is a fault row (make test-faults).
        pytest.param(1000, marks=pytest.mark.faults),
    ],
)
async def test_many_held_messages_at_the_minimum_visibility_stay_invisible(
    sqs: SqsClient,
    make_queue: Callable[..., Awaitable[str]],
    monkeypatch: pytest.MonkeyPatch,
    count: int,
) -> None:
    """Issue 25 (3): `count` messages (a worker's slots, up to 1,000) held at once at
    LANES_VISIBILITY_TIMEOUT=10, the least, with SQS a region away (500 ms per visibility
    call; moto on loopback answers in a few): for two whole visibilities, another worker
    polling the queue receives none of them, so none runs twice. (30 such calls in a row,
    as before, take 15 s: the last messages of a round went visible, and ran twice; 100
    in a row for 1,000 messages take 50 s.)"""
    near = SqsClient._calling

    @asynccontextmanager
    async def far(self: SqsClient, action: str, queue: str) -> AsyncIterator[Any]:
        if action == "ChangeMessageVisibilityBatch":
            await asyncio.sleep(0.5)
        async with near(self, action, queue) as client:
            yield client

    monkeypatch.setattr(SqsClient, "_calling", far)
    url = await make_queue(visibility_timeout=10)
    await sqs.send_batch(url, [OutgoingMessage(body=str(n)) for n in range(count)])
    heartbeat = Heartbeat(Settler(sqs), visibility_timeout=10)
    queue = QueueName("p", "acme", Lane.HIGH)
    beating = asyncio.create_task(heartbeat.run())
    held: set[str] = set()
    stolen: set[str] = set()  # received again while held: it would run twice
    try:
        while len(held) < count:
            for message in await sqs.receive(
                url, max_messages=10, wait_seconds=1, visibility_timeout=10
            ):
                (stolen if message.message_id in held else held).add(message.message_id)
                heartbeat.track(Delivery(message=message, queue=queue, url=url))
        until = time.monotonic() + 20
        while time.monotonic() < until:  # another worker, long-polling the queue
            got = await sqs.receive(url, max_messages=10, wait_seconds=1, visibility_timeout=0)
            stolen.update(message.message_id for message in got)
        assert stolen == set()
        assert heartbeat.held == len(held)
    finally:
        beating.cancel()


async def test_a_message_whose_extension_failed_or_came_late_is_logged_as_may_run_twice(
    sqs: SqsClient, make_queue: Callable[..., Awaitable[str]]
) -> None:
    """Issue 25 (3): an extension SQS refuses (the receipt is no longer valid: the message
    was received again or is gone) is logged `heartbeat.may_run_twice` with the message id,
    and the message is no longer held; one extended after its deadline (the heartbeat came
    late) is logged the same way and still held, with its new deadline."""
    url = await make_queue(visibility_timeout=30)
    await sqs.send_batch(url, [OutgoingMessage(body="late"), OutgoingMessage(body="gone")])
    received = await sqs.receive(url, max_messages=2, wait_seconds=1, visibility_timeout=30)
    late, gone = sorted(received, key=lambda message: message.body != "late")
    await sqs.delete_batch(url, [gone.receipt_handle])
    queue = QueueName("p", "acme", Lane.HIGH)
    held = {m.body: Delivery(message=m, queue=queue, url=url) for m in (late, gone)}
    heartbeat = Heartbeat(Settler(sqs), visibility_timeout=30)
    for delivery in held.values():
        heartbeat.track(delivery)
    heartbeat._held[held["late"]].expires = time.monotonic() - 1  # its deadline has passed
    heartbeat._held[held["gone"]].expires = time.monotonic() + 1  # due, and gone
    with structlog.testing.capture_logs() as logs:
        await heartbeat.beat()
    warned = {
        log["message_id"]: log["why"] for log in logs if log["event"] == "heartbeat.may_run_twice"
    }
    assert warned == {
        late.message_id: "extended after its deadline",
        gone.message_id: "its extension failed",
    }
    assert heartbeat.held == 1
    assert heartbeat._held[held["late"]].expires > time.monotonic() + 20
