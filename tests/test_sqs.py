"""worker.sqs against moto's SQS server over HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from worker.sqs import OutgoingMessage, QueueMissing, SqsClient, SqsError

MakeQueue = Callable[..., Awaitable[str]]


async def _drain(sqs: SqsClient, url: str, want: int) -> list[str]:
    bodies: list[str] = []
    for _ in range(10):
        got = await sqs.receive(url, max_messages=10, wait_seconds=0)
        bodies.extend(message.body for message in got)
        await sqs.delete_batch(url, [message.receipt_handle for message in got])
        if len(bodies) >= want:
            break
    return bodies


async def test_send_batch_chunks_and_receive_carries_attributes(
    sqs: SqsClient, make_queue: MakeQueue
) -> None:
    """25 messages go out in chunks of 10 and come back with attributes and receive count."""
    url = await make_queue()
    await sqs.send_batch(
        url, [OutgoingMessage(body=f"m{n}", attributes={"k": str(n)}) for n in range(25)]
    )
    first = await sqs.receive(url, max_messages=1, wait_seconds=0)
    assert len(first) == 1
    message = first[0]
    assert message.receive_count == 1
    assert message.message_attributes == {"k": message.body[1:]}
    assert message.sent_at.year >= 2024
    await sqs.delete_batch(url, [message.receipt_handle])
    rest = await _drain(sqs, url, 24)
    assert sorted([message.body, *rest]) == sorted(f"m{n}" for n in range(25))


async def test_send_batch_splits_by_size(sqs: SqsClient, make_queue: MakeQueue) -> None:
    """Three 400 KiB messages exceed one 1 MiB batch and are still all sent."""
    url = await make_queue()
    big = "x" * (400 * 1024)
    await sqs.send_batch(url, [OutgoingMessage(body=big + str(n)) for n in range(3)])
    assert len(await _drain(sqs, url, 3)) == 3


async def test_oversized_message_raises_naming_the_entry(
    sqs: SqsClient, make_queue: MakeQueue
) -> None:
    """A message over the payload limit is refused with an `SqsError`, not silently dropped."""
    url = await make_queue()
    with pytest.raises(SqsError):
        await sqs.send_batch(url, [OutgoingMessage(body="x" * (1024 * 1024 + 10))])


async def test_delete_batch_reports_failed_receipts(sqs: SqsClient, make_queue: MakeQueue) -> None:
    """A bogus receipt handle is returned as failed while the good one is deleted."""
    url = await make_queue()
    await sqs.send_batch(url, [OutgoingMessage(body="one")])
    (message,) = await sqs.receive(url, max_messages=10, wait_seconds=0)
    failed = await sqs.delete_batch(url, [message.receipt_handle, "not-a-receipt"])
    assert failed == ["not-a-receipt"]
    assert await sqs.receive(url, max_messages=10, wait_seconds=0) == []


async def test_change_visibility_zero_releases_at_once(
    sqs: SqsClient, make_queue: MakeQueue
) -> None:
    """Visibility 0 makes a received message receivable again, with a higher receive count."""
    url = await make_queue(visibility_timeout=60)
    await sqs.send_batch(url, [OutgoingMessage(body="again")])
    (message,) = await sqs.receive(url, max_messages=1, wait_seconds=0)
    assert await sqs.change_visibility_batch(url, [(message.receipt_handle, 0)]) == []
    (again,) = await sqs.receive(url, max_messages=1, wait_seconds=0)
    assert again.message_id == message.message_id
    assert again.receive_count == 2


async def test_missing_queue_is_one_line_naming_it(sqs: SqsClient) -> None:
    """Looking up a queue that does not exist raises `QueueMissing` naming the queue."""
    with pytest.raises(QueueMissing, match="no-such-queue"):
        await sqs.queue_url("no-such-queue")


async def test_queue_url_and_arn(sqs: SqsClient, make_queue: MakeQueue) -> None:
    """A queue's URL is found by name and its ARN ends in the name."""
    url = await make_queue("arn-check-queue")
    assert await sqs.queue_url("arn-check-queue") == url
    assert (await sqs.queue_arn("arn-check-queue")).endswith(":arn-check-queue")
    assert "VisibilityTimeout" in await sqs.attributes(url)


@pytest.mark.slow
async def test_unreachable_endpoint_is_wrapped() -> None:
    """A connection failure surfaces as `SqsError`, never a raw botocore error."""
    async with SqsClient(endpoint_url="http://127.0.0.1:9", region="us-east-1") as client:
        with pytest.raises(SqsError):
            await client.queue_url("anything")


async def test_aclose_twice_is_safe(sqs_endpoint: str) -> None:
    """Closing the owner twice is harmless; using it after closing is a clear error."""
    client = SqsClient(endpoint_url=sqs_endpoint)
    with pytest.raises(QueueMissing):
        await client.queue_url("opens-on-first-use")
    await client.aclose()
    await client.aclose()
    with pytest.raises(SqsError, match="closed"):
        await client.queue_url("x")
