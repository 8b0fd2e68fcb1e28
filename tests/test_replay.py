"""`lanes replay`: moves exactly the filtered dead letters back, once a run; loses none."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from lanes.policy import Lane
from scripts.tools.replay import DeadLetter, ReplayFilter, replay
from tests.fixtures_markets import acme_config
from tests.fixtures_scripts import CliRun, LanesEnv
from tests.fixtures_worker import AcmeMarket, Lanes, RunningWorker, job, wait_until
from worker.queues import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_FAILED_AT, ATTR_REASON
from worker.settings import WorkerSettings
from worker.sqs import OutgoingMessage, SqsClient, SqsMessage


def _dead_letter(kind: str, seller: str, number: int, reason: str) -> OutgoingMessage:
    body = {"kind": kind, "market": "coupang", "seller": seller, "payload": {"n": number},
            "id": f"{kind}-{number}"}  # fmt: skip
    attributes = {
        ATTR_REASON: reason,
        ATTR_ATTEMPTS: "3",
        ATTR_ERROR: reason,
        ATTR_FAILED_AT: "2025-01-01T00:00:00+00:00",
        "trace": f"t{number}",
    }
    return OutgoingMessage(body=json.dumps(body), attributes=attributes)


def _provision_and_seed(
    env: LanesEnv, run_cli: Callable[..., CliRun], messages: list[OutgoingMessage]
) -> None:
    assert run_cli("provision", "--market", "coupang").code == 0
    asyncio.run(_seed(env, messages))


async def _seed(env: LanesEnv, messages: list[OutgoingMessage]) -> None:
    async with SqsClient(endpoint_url=env.sqs_endpoint) as sqs:
        url = await sqs.queue_url(env.queue("coupang", "low", dead_letter=True))
        await sqs.send_batch(url, messages)


async def _everything(env: LanesEnv, queue: str) -> list[SqsMessage]:
    """All messages of `queue` (received, then made visible again)."""
    async with SqsClient(endpoint_url=env.sqs_endpoint) as sqs:
        url = await sqs.queue_url(queue)
        found: dict[str, SqsMessage] = {}
        for _ in range(3):  # moto may answer a receive with fewer than are there
            while batch := await sqs.receive(
                url, max_messages=10, wait_seconds=0, visibility_timeout=30
            ):
                found.update((message.message_id, message) for message in batch)
        await sqs.change_visibility_batch(url, [(m.receipt_handle, 0) for m in found.values()])
    return list(found.values())


def _ids(messages: list[SqsMessage]) -> Counter[str]:
    return Counter(json.loads(message.body)["id"] for message in messages)


def _mix() -> list[OutgoingMessage]:
    return (
        [
            _dead_letter("collect_order", "A1", number, "low lane gave up after 3 attempts")
            for number in range(12)
        ]
        + [
            _dead_letter("ship_order", "A1", number, "permanent error: 400 bad invoice")
            for number in range(12, 20)
        ]
        + [_dead_letter("collect_order", "B2", number, "timeout") for number in range(20, 25)]
    )


@pytest.mark.slow
def test_replay_moves_exactly_the_filtered_ones(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """`--kind collect_order --seller A1` moves those 12; the other 13 stay dead-lettered."""
    _provision_and_seed(lanes_env, run_cli, _mix())
    result = run_cli(
        "replay", "--market", "coupang", "--lane", "low", "--kind", "collect_order",
        "--seller", "A1", "--visibility", "20",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "moved 12 of 25 examined" in result.out
    moved = asyncio.run(_everything(lanes_env, lanes_env.queue("coupang", "low")))
    left = asyncio.run(_everything(lanes_env, lanes_env.queue("coupang", "low", dead_letter=True)))
    assert _ids(moved) == Counter({f"collect_order-{n}": 1 for n in range(12)})
    assert sorted(_ids(left)) == sorted(
        [f"ship_order-{n}" for n in range(12, 20)] + [f"collect_order-{n}" for n in range(20, 25)]
    )
    # The producer's attributes stay; ours go, so attempts start over.
    assert moved[0].message_attributes["trace"].startswith("t")
    assert not {ATTR_REASON, ATTR_ATTEMPTS, ATTR_ERROR} & set(moved[0].message_attributes)
    assert all(message.receive_count == 1 for message in moved)


@pytest.mark.slow
def test_dry_run_lists_and_moves_nothing(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """A dry run with `--reason` lists kind, seller, reason, attempts and age; nothing moves."""
    _provision_and_seed(lanes_env, run_cli, _mix())
    result = run_cli(
        "replay", "--market", "coupang", "--lane", "low", "--reason", "BAD INVOICE", "--dry-run",
        "--older-than", "1d",
    )  # fmt: skip
    assert result.code == 0, result.err
    header = result.out.splitlines()[0].split()
    assert header == ["kind", "seller", "reason", "attempts", "age"]
    assert result.out.count("ship_order") == 8
    assert "would move 8 of 25 examined" in result.out
    assert asyncio.run(_everything(lanes_env, lanes_env.queue("coupang", "low"))) == []
    left = asyncio.run(_everything(lanes_env, lanes_env.queue("coupang", "low", dead_letter=True)))
    assert len(left) == 25
    none_newer = run_cli(
        "replay", "--market", "coupang", "--lane", "low", "--newer-than", "1h", "--dry-run"
    )
    assert "would move 0 of 25" in none_newer.out


def test_max_bounds_the_replay(lanes_env: LanesEnv, run_cli: Callable[..., CliRun]) -> None:
    """`--max 5` moves five and leaves the rest."""
    _provision_and_seed(lanes_env, run_cli, _mix())
    result = run_cli("replay", "--market", "coupang", "--lane", "low", "--max", "5")
    assert "moved 5 of" in result.out
    assert len(asyncio.run(_everything(lanes_env, lanes_env.queue("coupang", "low")))) == 5


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_killed_replay_loses_nothing(lanes_env: LanesEnv, run_cli: Callable[..., CliRun]) -> None:
    """Killed (SIGKILL) midway, every message is in the lane queue or the dead-letter queue."""
    messages = [_dead_letter("collect_order", "A1", n, "timeout") for n in range(60)]
    _provision_and_seed(lanes_env, run_cli, messages)
    replaying = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "replay", "--market", "coupang", "--lane", "low",
         "--rate", "10", "--visibility", "3"],
        env=lanes_env.subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    lane = lanes_env.queue("coupang", "low")
    dead = lanes_env.queue("coupang", "low", dead_letter=True)
    deadline = time.monotonic() + 120  # a loaded host may take long to start a CLI process
    while time.monotonic() < deadline and not asyncio.run(_depth(lanes_env, lane)):
        time.sleep(0.2)
    replaying.kill()  # once the first moved: at 10/s, midway
    replaying.wait()
    deadline = time.monotonic() + 30
    while True:  # the messages the killed replay held come back after their visibility
        moved = _ids(asyncio.run(_everything(lanes_env, lane)))
        left = _ids(asyncio.run(_everything(lanes_env, dead)))
        if len(set(moved) | set(left)) == 60 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert 0 < sum(moved.values()) < 60, "the kill should land midway"
    assert set(moved) | set(left) == {f"collect_order-{n}" for n in range(60)}


async def _depth(env: LanesEnv, queue: str) -> int:
    async with SqsClient(endpoint_url=env.sqs_endpoint) as sqs:
        attributes = await sqs.attributes(await sqs.queue_url(queue))
    return int(attributes["ApproximateNumberOfMessages"])


@pytest.mark.parametrize(
    "body",
    ["not json", '{"kind": ' + "9" * 5000 + "}", "[" * 100_000, '{"seller": NaN}', "[]"],
)
def test_a_poison_body_is_read_without_failing(body: str) -> None:
    """Dead letters are often poison: bad JSON, a 5,000-digit number, deep nesting. Replay
    reads their kind and seller as unknown instead of failing."""
    message = SqsMessage(message_id="m", receipt_handle="r", body=body)
    dead = DeadLetter.of(message, datetime.now(UTC))
    assert (dead.kind, dead.seller) == (None, None)
    assert dead.replayed().body == body


class _AfterTheWorker:
    """The replay's SQS client, whose every receive from the dead-letter queue waits until
    the worker has settled all it was sent: a moved message that fails again is back in
    the dead-letter queue, under a new id, when the replay looks next. Before the first
    receive it sends `also` to the lane, which the worker dead-letters during the run."""

    def __init__(self, lanes: Lanes, also: list[str]) -> None:
        self._lanes = lanes
        self._also = also

    async def _settled(self) -> bool:
        return await self._lanes.depth(Lane.LOW) == (0, 0)

    async def receive(self, url: str, **options: Any) -> list[SqsMessage]:
        if self._also:
            await self._lanes.send(Lane.LOW, self._also)
            self._also = []
        await wait_until(self._settled)
        return await self._lanes.sqs.receive(url, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lanes.sqs, name)


async def test_a_replay_of_a_still_failing_dead_letter_ends_after_one_pass(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: Callable[..., Any],
) -> None:
    """With a worker running and the cause not fixed (the market answers 400), the dead
    letter is moved once, fails once more, comes back under a new id and is not taken again:
    the run ends, reporting it as come back with its reason. A message dead-lettered during
    the run for its own reasons is left for the next run. (Before, the replay took every
    returned copy again, each a market call, until the queue polled empty.)"""
    stale = job(id="stale", key="stale", status=400)
    fresh = job(id="fresh", key="fresh", status=400)
    await lanes.sqs.send_batch(
        lanes.url(Lane.LOW, dead=True),
        [OutgoingMessage(body=stale, attributes={ATTR_REASON: "permanent error: 400"})],
    )
    worker: RunningWorker = await start_worker(make_settings(), acme_config(acme))
    sqs = cast(SqsClient, _AfterTheWorker(lanes, also=[fresh]))
    report = await asyncio.wait_for(
        replay(
            sqs,
            dead_letter_url=lanes.url(Lane.LOW, dead=True),
            lane_url=lanes.url(Lane.LOW),
            only=ReplayFilter(),
            visibility=30,
        ),
        timeout=45,  # a guard against the endless loop, not a speed bound
    )
    await worker.stop()
    assert (report.examined, report.moved, report.arrived) == (1, 1, 1)
    assert list(report.came_back.values()) == [1]
    assert next(iter(report.came_back)).startswith("permanent error")
    calls = Counter(arrival.query.get("key") for arrival in acme.calls("/orders"))
    assert calls == Counter({"stale": 1, "fresh": 1})
    left = await lanes.take_all(Lane.LOW, dead=True)
    assert sorted(json.loads(message.body)["id"] for message in left) == ["fresh", "stale"]
