"""worker.processing: one delivery's way from body to outcome, with the real markets and Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from lanes.policy import Lane
from lanes.settings import Settings
from tests.fixtures_worker import (
    AcmeMarket,
    Lanes,
    acme_config,
    deliver,
    job,
    receive_deliveries,
    results,
)
from worker.outcomes import Action
from worker.runtime import Runtime

MakeRuntime = Callable[[Settings, object], Awaitable[Runtime]]


@pytest.fixture
async def runtime(
    acme: AcmeMarket, make_settings: Callable[..., Settings], make_runtime: MakeRuntime
) -> Runtime:
    return await make_runtime(make_settings(), acme_config(acme))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "body is not JSON"),
        ("[1, 2]", "not an object"),
        ('{"kind": "call", "market": "acme"}', "seller"),
        (json.dumps({"kind": "fly", "market": "acme", "seller": "s"}), "kind 'fly'"),
        (json.dumps({"kind": "call", "market": "zzz", "seller": "s"}), "market 'zzz'"),
        (job("nowhere"), "unknown endpoint"),
    ],
)
async def test_poison_and_invalid_messages_are_dead_lettered(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket, body: str, reason: str
) -> None:
    """A body that can never run is dead-lettered at once with a one-line reason, no call made."""
    (delivery,) = await deliver(lanes, Lane.HIGH, [body])
    outcome = await runtime.processor.process(delivery, deadline=None)
    assert outcome.action is Action.DEAD_LETTER
    assert reason in outcome.reason
    assert "\n" not in outcome.reason
    assert acme.calls() == []


async def test_success_writes_the_result(runtime: Runtime, lanes: Lanes, acme: AcmeMarket) -> None:
    """A 2xx answer is done: the result (with the producer's id and lane) reaches the sink."""
    (delivery,) = await deliver(lanes, Lane.MEDIUM, [job(id="j-1", status="200")])
    outcome = await runtime.processor.process(delivery, deadline=None)
    assert outcome.action is Action.DELETE
    (record,) = results(runtime.settings)
    assert record["id"] == "j-1"
    assert record["lane"] == "medium"
    assert record["calls"] == 1
    assert record["data"]["echo"] == {"status": "200"}


async def test_high_transient_failure_at_deadline_is_released_not_dead(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """High retries 5xx until its deadline, then the message is released with a backoff."""
    (delivery,) = await deliver(lanes, Lane.HIGH, [job(status="503")])
    deadline = asyncio.get_running_loop().time() + 1.5
    outcome = await runtime.processor.process(delivery, deadline=deadline)
    assert outcome.action is Action.RELEASE
    assert outcome.label == "retry_later"
    assert len(acme.calls()) >= 2


async def test_low_gives_up_after_max_attempts(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """Low stops after max_attempts (3) transient failures and dead-letters with the last error."""
    (delivery,) = await deliver(lanes, Lane.LOW, [job(status="503")])
    outcome = await runtime.processor.process(delivery, deadline=None)
    assert outcome.action is Action.DEAD_LETTER
    assert outcome.attempts == 3
    assert "503" in outcome.error
    assert len(acme.calls()) == 3


async def test_low_crash_loop_is_dead_lettered_without_running(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """A low message received more often than max_attempts is dead-lettered without a call."""
    await lanes.send(Lane.LOW, [job()])
    url = lanes.url(Lane.LOW)
    for _ in range(3):  # three deliveries that "crashed": received and never settled
        (message,) = await lanes.sqs.receive(url, max_messages=1, wait_seconds=1)
        await lanes.sqs.change_visibility_batch(url, [(message.receipt_handle, 0)])
    (delivery,) = await receive_deliveries(lanes, Lane.LOW, 1)
    assert delivery.message.receive_count == 4
    outcome = await runtime.processor.process(delivery, deadline=None)
    assert outcome.action is Action.DEAD_LETTER
    assert outcome.label == "crash_loop"
    assert acme.calls() == []


async def test_duplicate_side_effect_calls_the_market_once(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """Three deliveries of one ship id (two at once, one later) make one market call."""
    first, second = await deliver(lanes, Lane.HIGH, [job("ship", id="ship-1", order="o1")] * 2)
    outcomes = await asyncio.gather(
        runtime.processor.process(first, deadline=None),
        runtime.processor.process(second, deadline=None),
    )
    labels = sorted(outcome.label for outcome in outcomes)
    # The loser of the race either found the claim busy (released, comes back) or found it done.
    assert labels in (["claim_busy", "done"], ["done", "duplicate"])
    (third,) = await deliver(lanes, Lane.HIGH, [job("ship", id="ship-1", order="o1")])
    assert (await runtime.processor.process(third, deadline=None)).label == "duplicate"
    assert len(acme.calls("/ship")) == 1


async def test_failed_side_effect_frees_its_claim(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """A ship that failed releases its claim, so the redelivery runs at once (not 'busy')."""
    (failing,) = await deliver(lanes, Lane.LOW, [job("ship", id="ship-2", status="503")])
    assert (await runtime.processor.process(failing, deadline=None)).action is Action.DEAD_LETTER
    (again,) = await deliver(lanes, Lane.HIGH, [job("ship", id="ship-2")])
    assert (await runtime.processor.process(again, deadline=None)).label == "done"


async def test_waits_do_not_count_towards_the_crash_loop_guard(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """A low message released three times without spending an attempt (waiting for budget,
    shutdown) still runs on its fourth receive."""
    await lanes.send(Lane.LOW, [job(key="patient")])
    for _ in range(3):
        (waited,) = await receive_deliveries(lanes, Lane.LOW, 1)
        await runtime.processor.note_free_release(waited)
        await lanes.sqs.change_visibility_batch(waited.url, [(waited.receipt, 0)])
    (delivery,) = await receive_deliveries(lanes, Lane.LOW, 1)
    assert delivery.message.receive_count == 4
    assert (await runtime.processor.process(delivery, deadline=None)).label == "done"
    assert len(acme.calls()) == 1
