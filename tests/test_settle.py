"""worker.outcomes.Settler: batched deletes and releases, and dead letters with their reason."""

from __future__ import annotations

import asyncio

from lanes.policy import Lane
from tests.fixtures_worker import Lanes, deliver, job
from worker.outcomes import Outcome, Settler, dead_letter_message
from worker.queues import (
    ATTR_ATTEMPTS,
    ATTR_ERROR,
    ATTR_FAILED_AT,
    ATTR_FIRST_ATTEMPT_AT,
    ATTR_REASON,
    Delivery,
    QueueName,
)
from worker.sqs import OutgoingMessage, SqsClient, SqsMessage


async def test_dead_letter_keeps_the_body_and_attributes_and_adds_the_reason(
    lanes: Lanes, sqs: SqsClient
) -> None:
    """The DLQ copy has the original body and attributes plus reason, attempts, error, time."""
    await sqs.send_batch(
        lanes.url(Lane.LOW), [OutgoingMessage(body=job(), attributes={"trace": "t-1"})]
    )
    (message,) = await sqs.receive(lanes.url(Lane.LOW), max_messages=1, wait_seconds=1)
    delivery = Delivery(
        message=message, queue=QueueName(lanes.prefix, "acme", Lane.LOW), url=lanes.url(Lane.LOW)
    )
    outcome = Outcome.dead_letter("exhausted", "gave up\nafter 3", error="HTTP 503", attempts=3)
    assert await Settler(sqs).dead_letter(delivery, outcome)
    (dead,) = await lanes.take_all(Lane.LOW, dead=True)
    assert dead.body == message.body
    assert dead.message_attributes["trace"] == "t-1"
    assert dead.message_attributes[ATTR_REASON] == "gave up after 3"
    assert dead.message_attributes[ATTR_ATTEMPTS] == "3"
    assert dead.message_attributes[ATTR_ERROR] == "HTTP 503"
    assert dead.message_attributes[ATTR_FAILED_AT].endswith("+00:00")
    assert dead.message_attributes[ATTR_FIRST_ATTEMPT_AT].endswith("+00:00")  # first receive


def test_dead_letter_attributes_fit_the_sqs_limit() -> None:
    """With many producer attributes, ours are kept and the total stays at 10."""
    message = SqsMessage(
        message_id="m",
        receipt_handle="r",
        body="{}",
        message_attributes={f"a{n}": str(n) for n in range(10)},
    )
    delivery = Delivery(message=message, queue=QueueName("p", "acme", Lane.LOW), url="u")
    out = dead_letter_message(delivery, Outcome.dead_letter("poison", "bad", attempts=0))
    assert len(out.attributes) == 10
    assert ATTR_REASON in out.attributes


async def test_concurrent_deletes_share_batches_and_report_failures(
    lanes: Lanes, sqs: SqsClient
) -> None:
    """25 deletes at once all succeed; an expired receipt is reported as failed."""
    deliveries = await deliver(lanes, Lane.MEDIUM, [job(key=str(n)) for n in range(25)])
    settler = Settler(sqs)
    gone = Delivery(
        message=SqsMessage("x", "bogus", "{}"), queue=deliveries[0].queue, url=deliveries[0].url
    )
    answers = await asyncio.gather(*(settler.delete(d) for d in [*deliveries, gone]))
    assert answers == [True] * 25 + [False]
    assert await lanes.depth(Lane.MEDIUM) == (0, 0)


async def test_release_makes_the_message_visible_again(lanes: Lanes, sqs: SqsClient) -> None:
    """Release with 0 puts the message straight back in its queue."""
    (delivery,) = await deliver(lanes, Lane.HIGH, [job()])
    assert await Settler(sqs).release(delivery, 0)
    (again,) = await lanes.take_all(Lane.HIGH)
    assert again.message_id == delivery.message.message_id


async def test_dead_letter_to_a_missing_queue_reports_failure(sqs: SqsClient) -> None:
    """No dead-letter queue: the send fails and the caller keeps the message (no delete)."""
    message = SqsMessage("m", "r", "{}")
    delivery = Delivery(
        message=message, queue=QueueName("nosuch", "acme", Lane.LOW), url="http://x/q"
    )
    assert not await Settler(sqs).dead_letter(delivery, Outcome.dead_letter("p", "r", attempts=0))


def test_dead_letter_attributes_carry_no_url_credentials() -> None:
    """Issue 12 (8): a results URL's user:password and ?token= never reach a DLQ attribute."""
    message = SqsMessage(message_id="m", receipt_handle="r", body="{}")
    delivery = Delivery(message=message, queue=QueueName("p", "acme", Lane.LOW), url="u")
    error = "results callback https://bob:hunter2@sink.example/r?token=s3cret&x=1 answered 503"
    out = dead_letter_message(delivery, Outcome.dead_letter("x", error, attempts=1))
    text = " ".join(out.attributes.values())
    assert "hunter2" not in text
    assert "s3cret" not in text
    assert "sink.example/r?token=[redacted]&x=1" in text
