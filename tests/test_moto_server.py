"""scripts.local.moto_server: the patched moto keeps SQS's behaviour, over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from scripts.local.moto_server import QuickMotoServer
from worker.sqs import OutgoingMessage, SqsClient, SqsMessage


@pytest.fixture
async def quick_sqs(quick_moto: QuickMotoServer) -> AsyncIterator[SqsClient]:
    async with SqsClient(endpoint_url=quick_moto.url, region="us-east-1") as client:
        yield client


async def _queue(sqs: SqsClient, count: int) -> str:
    url = await sqs.create_queue(f"quick-{uuid.uuid4().hex[:10]}", {"VisibilityTimeout": "60"})
    await sqs.send_batch(url, [OutgoingMessage(body=f"m{n}") for n in range(count)])
    return url


async def _receive(sqs: SqsClient, url: str, count: int = 10) -> list[SqsMessage]:
    return await sqs.receive(url, max_messages=count, wait_seconds=0)


def _bodies(messages: list[SqsMessage]) -> list[str]:
    return [message.body for message in messages]


async def test_receives_go_on_past_the_messages_in_flight(quick_sqs: SqsClient) -> None:
    """Three receives of 10 from 30 messages get each message once, in order."""
    url = await _queue(quick_sqs, 30)
    got = [body for _ in range(3) for body in _bodies(await _receive(quick_sqs, url))]
    assert got == [f"m{n}" for n in range(30)]
    assert await _receive(quick_sqs, url) == []


async def test_deleting_at_the_head_skips_no_visible_message(quick_sqs: SqsClient) -> None:
    """Messages deleted ahead of the first visible one leave every visible one receivable
    (the skipped head shrinks with them)."""
    url = await _queue(quick_sqs, 30)
    first = await _receive(quick_sqs, url)
    await _receive(quick_sqs, url, 5)  # m10..m14 in flight: the head is m0..m14
    assert await quick_sqs.delete_batch(url, [m.receipt_handle for m in first]) == []
    assert _bodies(await _receive(quick_sqs, url)) == [f"m{n}" for n in range(15, 25)]


async def test_a_message_made_visible_again_at_the_head_is_received_next(
    quick_sqs: SqsClient,
) -> None:
    """A set-aside message brought back (visibility 0) is received before the ones behind
    it, as SQS does, though the head it sits in was known to be in flight."""
    url = await _queue(quick_sqs, 20)
    first = await _receive(quick_sqs, url)
    await _receive(quick_sqs, url, 1)  # m10: the head now covers m0..m10
    assert await quick_sqs.change_visibility_batch(url, [(first[3].receipt_handle, 0)]) == []
    again = await _receive(quick_sqs, url, 2)
    assert _bodies(again) == ["m3", "m11"]
    assert again[0].receive_count == 2


async def test_queue_attributes_count_visible_and_in_flight(quick_sqs: SqsClient) -> None:
    """The counts are read when asked: after a receive, and after a delete (with "All")."""
    url = await _queue(quick_sqs, 12)
    got = await _receive(quick_sqs, url)
    counts = await quick_sqs.attributes(
        url, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    assert counts == {
        "ApproximateNumberOfMessages": "2",
        "ApproximateNumberOfMessagesNotVisible": "10",
    }
    receipt = got[0].receipt_handle
    assert await quick_sqs.delete_batch(url, [receipt]) == []
    everything = await quick_sqs.attributes(url)
    assert everything["ApproximateNumberOfMessagesNotVisible"] == "9"
    assert everything["VisibilityTimeout"] == "60"


async def test_deleted_messages_are_dropped_and_the_rest_still_found(
    quick_sqs: SqsClient,
) -> None:
    """Deleting over a quarter of the queue drops the deleted ones from moto's list; the
    messages left keep their receipts, counts and order."""
    url = await _queue(quick_sqs, 40)
    got = [m for _ in range(4) for m in await _receive(quick_sqs, url)]
    assert await quick_sqs.delete_batch(url, [m.receipt_handle for m in got[:15]]) == []
    assert await quick_sqs.delete_batch(url, [m.receipt_handle for m in got[:15]]) == []
    back = [(got[30].receipt_handle, 0), (got[20].receipt_handle, 0)]
    assert await quick_sqs.change_visibility_batch(url, back) == []
    assert _bodies(await _receive(quick_sqs, url)) == ["m20", "m30"]
    counts = await quick_sqs.attributes(url, ["ApproximateNumberOfMessagesNotVisible"])
    assert counts == {"ApproximateNumberOfMessagesNotVisible": "25"}
    gone = await quick_sqs.change_visibility_batch(url, [(got[0].receipt_handle, 0)])
    assert gone == [got[0].receipt_handle]
