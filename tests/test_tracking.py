"""worker.tracking: job status records (`lanes:job:{id}`) written as a message's job ends."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from lanes.policy import Lane
from tests.fixtures_markets import acme_config
from tests.fixtures_worker import AcmeMarket, Lanes, deliver, job
from worker.runtime import TRACK_TTL, Runtime
from worker.settings import WorkerSettings
from worker.tracking import JobTracker, job_key, oldest_waiting, waiting_key

MakeRuntime = Callable[[WorkerSettings, object], Awaitable[Runtime]]


async def test_status_records_follow_the_job_to_done_and_dead_letter(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
    redis_client: aioredis.Redis,
) -> None:
    """A done job's record holds its result; a dead-lettered one its reason; a job without an
    id is recorded under its message id; every record expires after TRACK_TTL."""
    runtime = await make_runtime(make_settings(), acme_config(acme))
    good, bad, anonymous = await deliver(
        lanes, Lane.HIGH, [job(id="j-ok"), job(id="j-bad", status="400"), job(key="anon")]
    )
    for delivery in (good, bad, anonymous):
        outcome = await runtime.processor.process(delivery, deadline=None)
        await runtime.settler.settle(delivery, outcome)
    done = await runtime.tracker.get("j-ok")
    assert done is not None
    assert (done["state"], done["market"], done["lane"], done["kind"]) == (
        "done",
        "acme",
        "high",
        "call",
    )
    assert done["result"]["ok"] is True
    dead = await runtime.tracker.get("j-bad")
    assert dead is not None
    assert dead["state"] == "dead_lettered"
    assert dead["reason"].startswith("permanent error")
    raw = await redis_client.get(job_key(anonymous.message.message_id))
    assert raw is not None
    assert json.loads(raw)["state"] == "done"
    assert 0 < await redis_client.ttl(job_key("j-ok")) <= TRACK_TTL


async def test_a_failed_attempt_is_recorded_with_its_retry(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
) -> None:
    """A low attempt that failed is `failed` with the error and when it runs again."""
    runtime = await make_runtime(make_settings(), acme_config(acme))
    (delivery,) = await deliver(lanes, Lane.LOW, [job(id="j-503", status="503")])
    outcome = await runtime.processor.process(delivery, deadline=None)
    await runtime.settler.settle(delivery, outcome)
    record = await runtime.tracker.get("j-503")
    assert record is not None
    assert (record["state"], record["attempts"]) == ("failed", 1)
    assert "503" in record["error"]
    assert record["retry_in"] >= 30


async def test_waiting_sets_give_each_queues_oldest_unsettled_job(
    redis_client: aioredis.Redis,
) -> None:
    """A job is in its lane's waiting set from its first record (queued, running or failed:
    the first time stays) until done; dead-lettered, it moves to the dead-letter queue's
    set, and leaves it when it is recorded in its lane again (replayed). The oldest age is
    read per queue in one round trip; none known is None."""
    tracker = JobTracker(redis_client, ttl=3600)
    lane = {"market": "acme", "lane": "low"}
    await tracker.update_many([{"id": "a", "state": "queued", **lane}])
    await redis_client.zadd(waiting_key("acme", "low"), {"a": time.time() - 100})  # sent 100 s ago
    await tracker.update_many(
        [{"id": "a", "state": "running", **lane}, {"id": "b", "state": "failed", **lane}]
    )
    asked = [("acme", "low", False), ("acme", "low", True), ("acme", "high", False)]
    oldest, dead, other = await oldest_waiting(redis_client, asked, time.time())
    assert oldest is not None
    assert 100 <= oldest < 200  # "running" kept the first time
    assert (dead, other) == (None, None)
    await tracker.update_many([{"id": "a", "state": "done", **lane}])
    oldest, _, _ = await oldest_waiting(redis_client, asked, time.time())
    assert oldest is not None
    assert oldest < 100  # b's now
    await tracker.update_many([{"id": "b", "state": "dead_lettered", **lane}])
    oldest, dead, _ = await oldest_waiting(redis_client, asked, time.time())
    assert (oldest, dead is not None) == (None, True)
    await tracker.update_many([{"id": "b", "state": "queued", **lane}])  # replayed
    oldest, dead, _ = await oldest_waiting(redis_client, asked, time.time())
    assert (oldest is not None, dead) == (True, None)
    assert 0 < await redis_client.ttl(waiting_key("acme", "low")) <= 3600
