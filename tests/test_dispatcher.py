"""The dispatcher daemon in process, against moto's SQS, real Redis and the strict test market."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from lanes.policy import Lane
from lanes.settings import Settings
from tests.fixtures_worker import (
    AcmeMarket,
    Lanes,
    RunningWorker,
    acme_config,
    job,
    results,
    wait_until,
)
from worker.queues import ATTR_ATTEMPTS, ATTR_FAILED_AT, ATTR_REASON

StartWorker = Callable[..., Awaitable[RunningWorker]]


async def test_mixed_load_drains_with_nothing_lost(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., Settings],
    start_worker: StartWorker,
) -> None:
    """Every message in every lane ends done (in the results) or dead-lettered with a reason."""
    settings = make_settings()
    config = acme_config(acme)
    sent: dict[str, str] = {}
    for lane in Lane:
        bodies = []
        for n in range(12):
            key = f"{lane.value}-{n}"
            # Every fourth message is refused by the market for good (400).
            extra: dict[str, Any] = {"status": 400} if n % 4 == 3 else {}
            bodies.append(job(id=key, key=key, **extra))
            sent[key] = "dead" if extra else "done"
        await lanes.send(lane, bodies)
    worker = await start_worker(settings, config)

    async def drained() -> bool:
        return len(results(settings)) >= sum(1 for v in sent.values() if v == "done")

    await wait_until(drained)
    await worker.stop()
    done = {record["id"] for record in results(settings)}
    dead: dict[str, dict[str, str]] = {}
    for lane in Lane:
        for message in await lanes.take_all(lane, dead=True):
            dead[message.body] = message.message_attributes
        assert await lanes.take_all(lane) == []
    assert done == {key for key, fate in sent.items() if fate == "done"}
    assert len(dead) == sum(1 for fate in sent.values() if fate == "dead")
    for attributes in dead.values():
        assert attributes[ATTR_REASON].startswith("permanent error")
        assert ATTR_FAILED_AT in attributes and ATTR_ATTEMPTS in attributes
    assert acme.violations == 0
