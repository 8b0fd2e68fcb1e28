"""The dispatcher daemon in process, against moto's SQS, real Redis and the strict test market."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lanes.policy import Lane
from scripts.local.services import RedisServer
from tests.fixtures_markets import acme_config
from tests.fixtures_worker import AcmeMarket, Lanes, RunningWorker, job, results, wait_until
from worker.queues import ATTR_ATTEMPTS, ATTR_FAILED_AT, ATTR_REASON
from worker.settings import WorkerSettings

StartWorker = Callable[..., Awaitable[RunningWorker]]


@pytest.mark.slow
async def test_mixed_load_drains_with_nothing_lost(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """A mixed load in every lane (successes, 5xx that pass on retry, 400s, a low message that
    always fails) ends with each message done or dead-lettered with its reason, none lost."""
    settings = make_settings(retry_backoff=0.5)
    config = acme_config(acme)
    fates: dict[str, str] = {}
    for lane in Lane:
        bodies = []
        for n in range(12):
            key = f"{lane.value}-{n}"
            extra: dict[str, Any] = {}
            fates[key] = "done"
            if n % 4 == 3:
                extra, fates[key] = {"status": 400}, "permanent error"
            elif n % 4 == 2:
                extra = {"flaky": 1}  # one 503, then fine
            elif lane is Lane.LOW and n == 1:
                extra, fates[key] = {"status": 503}, "low lane gave up after 3 attempts"
            bodies.append(job(id=key, key=key, **extra))
        await lanes.send(lane, bodies)
    worker = await start_worker(settings, config)
    dead: dict[str, str] = {}

    async def settled() -> bool:
        for lane in Lane:
            for message in await lanes.take_all(lane, dead=True):
                key = json.loads(message.body)["id"]
                assert ATTR_FAILED_AT in message.message_attributes
                assert ATTR_ATTEMPTS in message.message_attributes
                dead[key] = message.message_attributes[ATTR_REASON]
        return len(results(settings)) + len(dead) >= len(fates)

    await wait_until(settled)
    await worker.stop()
    for lane in Lane:
        assert await lanes.take_all(lane) == []
    done = {record["id"] for record in results(settings)}
    assert done == {key for key, fate in fates.items() if fate == "done"}
    assert {key: reason.split(":")[0] for key, reason in dead.items()} == {
        key: fate for key, fate in fates.items() if fate != "done"
    }
    assert acme.violations == 0


@pytest.mark.slow
async def test_poison_messages_land_in_the_dead_letter_queue_with_the_reason(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """Bad bodies go to their lane's DLQ (original body kept) and the worker goes on."""
    settings = make_settings()
    await lanes.send(Lane.MEDIUM, ["{oops", '{"kind": "call"}', job(key="fine")])
    worker = await start_worker(settings, acme_config(acme))
    dead: list[Any] = []

    async def settled() -> bool:
        dead.extend(await lanes.take_all(Lane.MEDIUM, dead=True))
        return len(dead) == 2 and len(results(settings)) == 1

    await wait_until(settled)
    await worker.stop()
    reasons = {m.body: m.message_attributes[ATTR_REASON] for m in dead}
    assert reasons["{oops"].startswith("poison message: body is not JSON")
    assert reasons['{"kind": "call"}'].startswith("poison message: message: market")
    assert worker.dispatcher.outcomes == {"poison": 2, "done": 1}


@pytest.mark.slow
@pytest.mark.faults  # a measured latency: run alone
async def test_high_starts_within_a_second_behind_a_deep_low_backlog(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """With every low slot busy and hundreds of low messages waiting, a high message starts
    within a second of being sent."""
    settings = make_settings(concurrency=4)
    for start in range(0, 200, 50):
        await lanes.send(
            Lane.LOW, [job(key=f"low-{n}", sleep=0.3) for n in range(start, start + 50)]
        )
    worker = await start_worker(settings, acme_config(acme, rps=50))

    async def low_busy() -> bool:
        return len(acme.calls()) >= 6

    await wait_until(low_busy)
    sent_at = time.monotonic()
    await lanes.send(Lane.HIGH, [job(key="urgent")])

    async def high_arrived() -> bool:
        return any(a.query.get("key") == "urgent" for a in acme.calls())

    await wait_until(high_arrived, within=10)
    (arrival,) = [a for a in acme.calls() if a.query.get("key") == "urgent"]
    await worker.stop()
    assert arrival.at - sent_at < 1.0
    assert acme.violations == 0


@pytest.mark.slow
async def test_redis_restart_loses_nothing_and_makes_no_unbudgeted_call(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
    redis_server: RedisServer,
) -> None:
    """Redis goes away for 2.5 seconds mid-run: once the calls admitted before it are sent,
    none reaches the market until Redis is back, the market's limit holds, and every message
    is still done afterwards."""
    settings = make_settings(concurrency=6)
    keys = [f"k{n}" for n in range(60)]
    for lane, chunk in zip(Lane, (keys[:20], keys[20:40], keys[40:]), strict=True):
        await lanes.send(lane, [job(id=key, key=key) for key in chunk])
    worker = await start_worker(settings, acme_config(acme, rps=10))

    async def started() -> bool:
        return len(results(settings)) >= 10

    await wait_until(started)
    redis_server.stop()
    stopped_at = time.monotonic()
    await asyncio.sleep(2.5)
    restarted_at = time.monotonic()
    redis_server.start()

    async def all_done() -> bool:
        return len({r["id"] for r in results(settings)}) == len(keys)

    await wait_until(all_done, within=45)
    await worker.stop()
    # Calls admitted before the outage may be reserved for a moment shortly after it began.
    during = [a for a in acme.calls() if stopped_at + 1.5 < a.at < restarted_at]
    assert during == []
    assert acme.violations == 0
    for lane in Lane:
        assert await lanes.take_all(lane, dead=True) == []


@pytest.mark.slow
async def test_duplicate_ship_messages_call_the_market_once(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """Four copies of one ship message (same producer id), some processed at once: the market
    is called once and every copy is acknowledged."""
    settings = make_settings()
    await lanes.send(Lane.HIGH, [job("ship", id="ship-9", order="o-9", sleep=0.3)] * 4)
    worker = await start_worker(settings, acme_config(acme))

    async def acknowledged() -> bool:
        outcomes = worker.dispatcher.outcomes
        return outcomes.get("done", 0) + outcomes.get("duplicate", 0) == 4

    await wait_until(acknowledged)
    await worker.stop()
    assert len(acme.calls("/ship")) == 1
    assert worker.dispatcher.outcomes["done"] == 1
    assert await lanes.depth(Lane.HIGH) == (0, 0)


@pytest.mark.slow
async def test_a_job_longer_than_the_visibility_timeout_runs_once(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """A 12 s job under a 10 s visibility timeout: the heartbeat keeps its message hidden, so
    it is not delivered (and run) a second time."""
    settings = make_settings()
    await lanes.send(Lane.MEDIUM, [job(id="long", key="long", sleep=12)])
    worker = await start_worker(settings, acme_config(acme, timeout=30))

    async def finished() -> bool:
        return len(results(settings)) == 1

    await wait_until(finished, within=40)
    await worker.stop()
    assert len(acme.calls()) == 1
    assert worker.dispatcher.outcomes == {"done": 1}


@pytest.mark.slow
async def test_a_poll_in_flight_at_shutdown_is_finished_and_its_message_released(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """Issue 12 (11): stop() does not abandon a long poll in flight (its endpoint would hand
    it the next message, invisible with no one holding it); the poll finishes and what it
    got is released at once, so a message sent during shutdown is visible right after."""
    settings = make_settings(wait_seconds=3)
    worker = await start_worker(settings, acme_config(acme))
    await asyncio.sleep(0.5)  # the pollers are now inside their long polls
    worker.dispatcher.stop()
    await lanes.send(Lane.HIGH, [job(key="late")])
    await worker.task
    assert [m.body for m in await lanes.take_all(Lane.HIGH)] == [job(key="late")]
    assert acme.calls() == []
