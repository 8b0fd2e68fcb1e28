"""worker.heartbeat: a held message stays invisible past its visibility timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

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
