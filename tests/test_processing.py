"""worker.processing: one delivery's way from body to outcome, with the real markets and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lanes.policy import Lane
from scripts.local.services import RedisServer
from tests.fixtures_markets import acme_config
from tests.fixtures_worker import (
    AcmeMarket,
    Lanes,
    deliver,
    job,
    receive_deliveries,
    results,
    wait_until,
)
from worker.outcomes import Action
from worker.processing import RUNNING_AFTER
from worker.queues import Delivery
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.tracking import Attempts

MakeRuntime = Callable[[WorkerSettings, object], Awaitable[Runtime]]


@pytest.fixture
async def runtime(
    acme: AcmeMarket, make_settings: Callable[..., WorkerSettings], make_runtime: MakeRuntime
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


@pytest.mark.slow
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


async def _redeliver(lanes: Lanes, lane: Lane) -> Delivery:
    """The next delivery of the lane's one message, after releasing the previous one."""
    (delivery,) = await receive_deliveries(lanes, lane, 1)
    return delivery


async def test_low_makes_one_attempt_per_delivery_and_gives_up_after_max_attempts(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """Issue 12 (12): low makes one attempt per delivery, released with minutes of backoff
    between them (not milliseconds), counted by lanes; the third failure dead-letters with
    the last error."""
    await lanes.send(Lane.LOW, [job(status="503")])
    for attempt in (1, 2):
        delivery = await _redeliver(lanes, Lane.LOW)
        outcome = await runtime.processor.process(delivery, deadline=None)
        assert (outcome.action, outcome.label) == (Action.RELEASE, "transient")
        assert outcome.visibility >= 30 * attempt
        assert len(acme.calls()) == attempt
        await lanes.sqs.change_visibility_batch(delivery.url, [(delivery.receipt, 0)])
    last = await runtime.processor.process(await _redeliver(lanes, Lane.LOW), deadline=None)
    assert last.action is Action.DEAD_LETTER
    assert last.attempts == 3
    assert "503" in last.error
    assert len(acme.calls()) == 3


async def test_low_deliveries_that_died_are_counted_and_stopped(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """A low message whose deliveries all died mid-attempt (crash, kill, Lambda timeout) is
    dead-lettered with a reason once lanes' own count passes max_attempts, without a call."""
    await lanes.send(Lane.LOW, [job()])
    (first,) = await receive_deliveries(lanes, Lane.LOW, 1)
    for _ in range(3):  # three attempts that "crashed": counted, never settled
        await runtime.processor._attempts.spend(first)
    outcome = await runtime.processor.process(first, deadline=None)
    assert outcome.action is Action.DEAD_LETTER
    assert outcome.reason == "low lane gave up after 3 attempts"
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


@pytest.mark.slow
async def test_failed_side_effect_frees_its_claim(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """A ship the market answered 503 (surely not done) frees its claim, so the redelivery
    runs at once (not 'busy', not 'unknown')."""
    (failing,) = await deliver(lanes, Lane.LOW, [job("ship", id="ship-2", status="503")])
    assert (await runtime.processor.process(failing, deadline=None)).label == "transient"
    (again,) = await deliver(lanes, Lane.HIGH, [job("ship", id="ship-2")])
    assert (await runtime.processor.process(again, deadline=None)).label == "done"


async def test_waits_spend_no_attempt_and_no_receive(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket
) -> None:
    """Issue 12 (1): waits released at the deadline (here: Redis down for the attempt count)
    refund their attempt; a low message that waited five times still runs."""
    await lanes.send(Lane.LOW, [job(key="patient")])
    (delivery,) = await receive_deliveries(lanes, Lane.LOW, 1)
    for _ in range(5):
        await runtime.processor._attempts.spend(delivery)
        await runtime.processor._attempts.refund(delivery)
    assert (await runtime.processor.process(delivery, deadline=None)).label == "done"
    assert len(acme.calls()) == 1


@pytest.mark.slow
async def test_redis_outage_is_waited_out_holding_the_message(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
    redis_server: RedisServer,
) -> None:
    """Issue 12 (1): with Redis down, a low side-effect job waits in process (one delivery, no
    receive spent, no attempt) and runs once Redis is back: done, not dead-lettered."""
    runtime = await make_runtime(make_settings(), acme_config(acme))
    (delivery,) = await deliver(lanes, Lane.LOW, [job("ship", id="ship-r", order="o")])
    redis_server.stop()
    loop = asyncio.get_running_loop()
    processing = asyncio.create_task(
        runtime.processor.process(delivery, deadline=time.monotonic() + 120)
    )
    await asyncio.sleep(2.5)
    assert not processing.done()
    await loop.run_in_executor(None, redis_server.start)
    outcome = await processing
    assert (outcome.action, outcome.label) == (Action.DELETE, "done")
    assert len(acme.calls("/ship")) == 1


async def test_sink_outage_keeps_the_result_and_never_reruns_the_job(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
    tmp_path: Path,
) -> None:
    """Issue 12 (7): the market job ran once; the sink (a directory, not a file) refuses the
    write; the delivery is released as a wait and its redelivery only writes the kept
    result, once the sink works: one market call, no attempt spent, no dead letter."""
    sink_path = tmp_path / "results.jsonl"
    sink_path.mkdir()
    settings = make_settings(results_url=f"file:{sink_path}")
    runtime = await make_runtime(settings, acme_config(acme))
    (delivery,) = await deliver(lanes, Lane.LOW, [job(key="once")])
    first = await runtime.processor.process(delivery, deadline=None)
    assert (first.action, first.label) == (Action.RELEASE, "sink_unavailable")
    sink_path.rmdir()
    await lanes.sqs.change_visibility_batch(delivery.url, [(delivery.receipt, 0)])
    again = await runtime.processor.process(await _redeliver(lanes, Lane.LOW), deadline=None)
    assert (again.action, again.label) == (Action.DELETE, "result_resent")
    assert len(acme.calls()) == 1
    (record,) = results(settings)
    assert record["message_id"] == delivery.message.message_id


@pytest.mark.slow
async def test_a_timed_out_post_is_never_sent_again_and_stops_for_a_person(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
) -> None:
    """Issue 12 (3): a ship whose POST timed out (the market may have acted) is not retried in
    the same delivery nor by a redelivery: it is dead-lettered "outcome unknown", one POST."""
    runtime = await make_runtime(make_settings(), acme_config(acme, timeout=0.5))
    (delivery,) = await deliver(lanes, Lane.HIGH, [job("ship", id="ship-t", sleep=2)])
    outcome = await runtime.processor.process(delivery, deadline=time.monotonic() + 30)
    assert outcome.action is Action.DEAD_LETTER
    assert outcome.reason.startswith("outcome unknown")
    (again,) = await deliver(lanes, Lane.HIGH, [job("ship", id="ship-t", sleep=2)])
    repeat = await runtime.processor.process(again, deadline=time.monotonic() + 30)
    assert repeat.reason.startswith("outcome unknown")
    assert len(acme.calls("/ship")) == 1


@pytest.mark.parametrize("lane", list(Lane))
async def test_hostile_bodies_dead_letter_with_a_reason_in_every_lane(
    runtime: Runtime, lanes: Lanes, acme: AcmeMarket, lane: Lane
) -> None:
    """Issue 12 (5): a 5000-digit integer, deep nesting and a seller with braces are
    dead-lettered at once with a reason in every lane (they looped as `crashed` in high and
    medium), and no call is made."""
    hostile = [
        '{"kind": "call", "market": "acme", "seller": "s", "payload": {"n": 1' + "0" * 5000 + "}}",
        '{"kind": "call", "market": "acme", "seller": "s", "payload": '
        + '{"a": ' * 3000
        + "1"
        + "}" * 3000
        + "}",
        '{"kind": "call", "market": "acme", "seller": "s{1}", "payload": {"endpoint": "orders"}}',
    ]
    for delivery in await deliver(lanes, lane, hostile):
        outcome = await runtime.processor.process(delivery, deadline=None)
        assert (outcome.action, outcome.label) == (Action.DEAD_LETTER, "poison")
        assert outcome.reason.startswith("poison message: ")
    assert acme.calls() == []


async def test_a_job_is_recorded_running_only_once_it_has_run_a_while(
    runtime: Runtime, lanes: Lanes
) -> None:
    """Issue 24: a quick job writes no "running" record (its ending is its one status
    write, by the settler); one still running after RUNNING_AFTER s is recorded running,
    with its attempts, before it ends."""
    quick, slow = await deliver(
        lanes, Lane.LOW, [job(id="quick", key="q"), job(id="slow", key="s", sleep=1.5)]
    )
    assert (await runtime.processor.process(quick, deadline=None)).action is Action.DELETE
    assert await runtime.tracker.get("quick") is None
    running = asyncio.create_task(runtime.processor.process(slow, deadline=None))

    async def recorded_running() -> bool:
        record = await runtime.tracker.get("slow")
        return record is not None and record["state"] == "running"

    await wait_until(recorded_running)
    assert not running.done()
    assert (await runtime.tracker.get("slow") or {})["attempts"] == 1
    assert (await running).action is Action.DELETE
    assert RUNNING_AFTER <= 1.5


async def test_a_redelivery_that_never_ran_reads_no_kept_result(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A redelivery reads Redis for a result kept by an earlier run, unless the dispatcher
    knows no earlier delivery ran (`never_ran`: each was set aside)."""
    runtime = await make_runtime(make_settings(), acme_config(acme))
    reads: list[str] = []
    plain = Attempts.kept_result

    async def kept_result(self: Attempts, delivery: Delivery) -> dict[str, Any] | None:
        reads.append(delivery.message.message_id)
        return await plain(self, delivery)

    monkeypatch.setattr(Attempts, "kept_result", kept_result)
    (first,) = await deliver(lanes, Lane.HIGH, [job(key="aside")])
    await lanes.sqs.change_visibility_batch(first.url, [(first.receipt, 0)])  # as set aside
    again = await _redeliver(lanes, Lane.HIGH)
    assert again.message.receive_count == 2
    outcome = await runtime.processor.process(replace(again, never_ran=True), deadline=None)
    assert (outcome.action, reads) == (Action.DELETE, [])
    await runtime.processor.process(again, deadline=None)
    assert reads == [again.message.message_id]
