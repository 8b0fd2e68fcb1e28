"""worker.tracking: job status records (`lanes:job:{id}`) written as a message's job ends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lanes.policy import Lane
from scripts.local.services import free_port
from tests.fixtures_markets import acme_config
from tests.fixtures_worker import AcmeMarket, Lanes, deliver, job
from worker.runtime import TRACK_TTL, Runtime
from worker.settings import WorkerSettings
from worker.tracking import (
    MEMO_PERIOD,
    SELLER_JOBS,
    JobTracker,
    job_key,
    oldest_waiting,
    outcomes_key,
    seller_jobs_key,
    waiting_key,
)

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


# -- group commit, merged aggregates, expiry memo ----------------------------------------

Command = tuple[Any, ...]


class Trips:
    """Records each pipeline the client sends (its commands); `hold()` keeps the next one
    from being sent until `release()`, so the test decides what arrives meanwhile."""

    def __init__(self) -> None:
        self.sent: list[list[Command]] = []
        self.entered = asyncio.Event()
        self._gate = asyncio.Event()
        self._holding = False

    def hold(self) -> None:
        self.entered.clear()
        self._gate.clear()
        self._holding = True

    def release(self) -> None:
        self._gate.set()

    def names(self, trip: int = -1) -> list[str]:
        return [str(args[0]).upper() for args in self.sent[trip]]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        plain = Pipeline.execute

        async def execute(pipe: Pipeline, raise_on_error: bool = True) -> Any:
            self.sent.append([args for args, _options in pipe.command_stack])
            if self._holding:
                self._holding = False
                self.entered.set()
                await self._gate.wait()
            return await plain(pipe, raise_on_error)

        monkeypatch.setattr(Pipeline, "execute", execute)


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Trips:
    recorder = Trips()
    recorder.install(monkeypatch)
    return recorder


class Clock:
    """The tracker's clock, moved by the test; `advance` also ages the test Redis's keys
    by as much (their TTLs shrink, those run out are deleted), so expiry can be checked
    without waiting."""

    def __init__(self, redis: aioredis.Redis, now: float) -> None:
        self.now = now
        self._redis = redis

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for key in await self._redis.keys("*"):
            left = await self._redis.pttl(key)
            if left < 0:
                continue
            if left <= seconds * 1000:
                await self._redis.delete(key)
            else:
                await self._redis.pexpire(key, left - int(seconds * 1000))


def _job(job_id: str, state: str, *, lane: str = "low", seller: str = "s-1") -> dict[str, Any]:
    return {"id": job_id, "state": state, "market": "acme", "lane": lane, "seller": seller}


async def test_updates_handed_over_together_share_one_round_trip(
    redis_client: aioredis.Redis, trips: Trips
) -> None:
    """Updates started together go in one round trip, their aggregates merged (one ZADD per
    seller index, one ZREM per waiting set, one HINCRBY per outcome field); each caller's
    record is stored when its await returns."""
    tracker = JobTracker(redis_client, ttl=3600)

    async def settle(n: int) -> None:
        await tracker.update(f"j-{n}", "done", market="acme", lane="high", seller="s-1")
        assert await redis_client.get(job_key(f"j-{n}")) is not None

    await asyncio.gather(*(settle(n) for n in range(20)))
    assert len(trips.sent) == 1
    names = trips.names()
    assert names.count("SET") == 20
    assert (names.count("ZADD"), names.count("ZREM"), names.count("HINCRBY")) == (1, 1, 1)
    assert await tracker.outcomes(int(time.time() // 60)) == {"acme:high:done": 20}


async def test_updates_arriving_during_a_round_trip_leave_together_in_the_next(
    redis_client: aioredis.Redis, trips: Trips
) -> None:
    tracker = JobTracker(redis_client, ttl=3600)
    trips.hold()
    first = asyncio.create_task(tracker.update("first", "queued"))
    await trips.entered.wait()  # the first round trip is under way
    later = [asyncio.create_task(tracker.update(f"later-{n}", "queued")) for n in range(5)]
    await asyncio.sleep(0)  # they hand over while the first round trip is held
    trips.release()
    await asyncio.gather(first, *later)
    assert [names.count("SET") for names in map(trips.names, range(len(trips.sent)))] == [1, 5]


async def test_a_cancelled_caller_leaves_the_others_and_the_drainer_unharmed(
    redis_client: aioredis.Redis, trips: Trips
) -> None:
    """A caller cancelled while its write waits for the next round trip: the others' awaits
    return with their records stored, the cancelled one's record (handed over) is written
    too, and later updates go on as before."""
    tracker = JobTracker(redis_client, ttl=3600)
    trips.hold()
    first = asyncio.create_task(tracker.update("first", "queued"))
    await trips.entered.wait()
    cancelled = asyncio.create_task(tracker.update("cancelled", "queued"))
    kept = asyncio.create_task(tracker.update("kept", "queued"))
    await asyncio.sleep(0)
    cancelled.cancel()
    trips.release()
    await asyncio.gather(first, kept)
    assert cancelled.cancelled()
    await tracker.flush()
    for job_id in ("first", "kept", "cancelled"):
        assert await tracker.get(job_id) is not None
    await tracker.update("after", "done")
    assert await tracker.get("after") is not None


async def test_a_failed_round_trip_is_logged_and_returns_to_every_waiter() -> None:
    """Redis unreachable: every caller of the batch returns its record (best effort)."""
    unreachable = aioredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    tracker = JobTracker(unreachable, ttl=3600)
    try:
        records = await asyncio.gather(*(tracker.update(f"j-{n}", "queued") for n in range(3)))
    finally:
        await unreachable.aclose()
    assert [record["id"] for record in records] == ["j-0", "j-1", "j-2"]


async def _board(tracker: JobTracker, redis: aioredis.Redis, market: str, now: float) -> Any:
    """What the board reads: the seller view, the outcome counts, the oldest waiting, and the
    waiting sets themselves (scores too)."""
    asked = [(market, lane, dead) for lane in ("low", "high") for dead in (False, True)]
    sets = [
        await redis.zrange(waiting_key(market, lane, dead_letter=dead), 0, -1, withscores=True)
        for market, lane, dead in asked
    ]
    return (
        await tracker.recent(market, "s-1"),
        await tracker.outcomes(int(now // 60)),
        await oldest_waiting(redis, asked, now),
        sets,
    )


async def test_merged_writes_give_the_board_the_same_answers_as_one_by_one(
    redis_client: aioredis.Redis, trips: Trips
) -> None:
    """The same records, each its own round trip or all in one (the same job several times
    among them: queued then done, dead-lettered then replayed, running twice), leave the
    same records, seller index, outcome counts and waiting sets behind."""
    clock = Clock(redis_client, 1_800_000_000.0)
    before = [  # written one by one in both: what the sets hold before the story
        ("e", "queued", "high"),
        ("g", "dead_lettered", "low"),
        ("h", "running", "low"),
    ]
    story = [
        ("a", "queued", "low"),
        ("b", "running", "low"),
        ("a", "running", "low"),
        ("c", "failed", "high"),
        ("a", "done", "low"),
        ("d", "dead_lettered", "low"),
        ("b", "done", "low"),
        ("e", "done", "high"),
        ("e", "queued", "high"),  # replayed after done: waiting again, from now
        ("d", "queued", "low"),  # replayed from the dead-letter queue
        ("g", "queued", "low"),  # replayed, then done
        ("g", "done", "low"),
        ("h", "failed", "low"),  # its first time stays
        ("f", "dead_lettered", "high"),
    ]

    async def write(market: str, *, together: bool) -> None:
        tracker = JobTracker(redis_client, ttl=3600, clock=clock)
        clock.now = 1_800_000_000.0

        async def hand_over(job_id: str, state: str, lane: str) -> asyncio.Task[Any]:
            record = {**_job(job_id, state, lane=lane), "market": market}
            task = asyncio.create_task(tracker.update_many([record]))
            await asyncio.sleep(0)  # handed over, stamped at this moment
            clock.now += 1.0
            return task

        for step in before:
            await (await hand_over(*step))
        start = len(trips.sent)
        if together:
            trips.hold()
            first = asyncio.create_task(tracker.update("x", "queued"))
            await trips.entered.wait()
        tasks = []
        for step in story:
            tasks.append(await hand_over(*step))
            if not together:
                await tasks[-1]
        if together:
            trips.release()
            await asyncio.gather(first, *tasks)
            assert len(trips.sent) - start == 2  # the held one, then all of the story
        await asyncio.gather(*tasks)

    await write("one-by-one", together=False)
    await write("together", together=True)
    now = clock.now + 5
    alone = await _board(JobTracker(redis_client, ttl=3600), redis_client, "one-by-one", now)
    merged = await _board(JobTracker(redis_client, ttl=3600), redis_client, "together", now)
    recent_alone, *rest_alone = alone
    recent_merged, *rest_merged = merged
    assert [(r["id"], r["state"], r["updated_at"]) for r in recent_merged] == [
        (r["id"], r["state"], r["updated_at"]) for r in recent_alone
    ]
    outcomes_alone, *waits_alone = rest_alone
    outcomes_merged, *waits_merged = rest_merged
    assert {k.split(":", 1)[1]: v for k, v in outcomes_merged.items()} == {
        k.split(":", 1)[1]: v for k, v in outcomes_alone.items()
    }
    assert waits_merged == waits_alone
    assert outcomes_alone  # the story did count outcomes


async def test_expiry_memo_keeps_every_entry_its_ttl_and_still_prunes(
    redis_client: aioredis.Redis, trips: Trips
) -> None:
    """Every aggregate key has at least `ttl` left after each write; a seller index's and an
    outcome hash's EXPIRE goes once per period (to ttl + period), a waiting set's with each
    round trip that adds to it; an entry older than `ttl` is still pruned (within a
    period) and the seller index still trimmed to SELLER_JOBS."""
    ttl, period = 1000, 60
    clock = Clock(redis_client, 1_800_000_000.0)
    tracker = JobTracker(redis_client, ttl=ttl, period=period, clock=clock)
    index, waiting = seller_jobs_key("acme", "s-1"), waiting_key("acme", "low")

    async def aggregates_keep_ttl() -> None:
        keys = [index, waiting, outcomes_key(int(clock.now // 60))]
        for key in keys:
            assert await redis_client.ttl(key) >= ttl, key

    await tracker.update_many([_job("old", "running"), _job("done-1", "done")])
    await aggregates_keep_ttl()
    assert await redis_client.ttl(index) > ttl  # ttl + period
    for step in range(1, 25):  # 50 s apart: the memo (60 s) lapses every other write
        await clock.advance(50)
        await tracker.update_many([_job(f"run-{step}", "running"), _job(f"d-{step}", "done")])
        await aggregates_keep_ttl()
        expired = [str(args[1]) for args in trips.sent[-1] if str(args[0]).upper() == "EXPIRE"]
        assert waiting in expired  # added to: it may have been emptied and deleted
        assert (index in expired) == (step % 2 == 0)
    # "old" (added 1,200 s ago, ttl 1,000) is pruned; those within ttl are not.
    found = await redis_client.zrange(waiting, 0, -1, withscores=True)
    members = cast(list[tuple[bytes, float]], found)
    assert b"old" not in [member for member, _ in members]
    assert all(clock.now - score <= ttl + period for _, score in members)
    assert b"run-24" in [member for member, _ in members]
    # Seen by the board: its oldest waiting job is within ttl + period.
    (age,) = await oldest_waiting(redis_client, [("acme", "low", False)], clock.now)
    assert age is not None
    assert age <= ttl + period


async def test_a_seller_index_is_trimmed_to_its_newest_once_a_period(
    redis_client: aioredis.Redis,
) -> None:
    clock = Clock(redis_client, 1_800_000_000.0)
    tracker = JobTracker(redis_client, ttl=3600, clock=clock)
    index = seller_jobs_key("acme", "s-1")
    await tracker.update_many([_job(f"j-{n}", "done") for n in range(SELLER_JOBS + 5)])
    assert await redis_client.zcard(index) == SELLER_JOBS
    await clock.advance(1)
    await tracker.update_many([_job(f"k-{n}", "done") for n in range(5)])
    assert await redis_client.zcard(index) == SELLER_JOBS + 5  # trimmed at the next upkeep
    newest = await tracker.recent("acme", "s-1", limit=5)
    assert sorted(record["id"] for record in newest) == [f"k-{n}" for n in range(5)]
    await clock.advance(MEMO_PERIOD)
    await tracker.update_many([_job("last", "done")])
    assert await redis_client.zcard(index) == SELLER_JOBS
    assert (await tracker.recent("acme", "s-1", limit=1))[0]["id"] == "last"


async def test_a_waiting_set_emptied_and_made_anew_within_a_period_has_its_expiry(
    redis_client: aioredis.Redis,
) -> None:
    """A `done` can empty a waiting set (Redis deletes it); the next add makes it anew, and
    gets its EXPIRE though the set's upkeep went moments ago."""
    tracker = JobTracker(redis_client, ttl=3600)
    waiting = waiting_key("acme", "low")
    await tracker.update_many([_job("a", "queued")])
    await tracker.update_many([_job("a", "done")])
    assert not await redis_client.exists(waiting)
    await tracker.update_many([_job("b", "queued")])
    assert 0 < await redis_client.ttl(waiting) <= 3600


async def test_closing_the_runtime_sends_what_was_handed_over(
    acme: AcmeMarket,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
    redis_client: aioredis.Redis,
) -> None:
    """A record whose caller was cancelled before its round trip left is still written by
    the time the runtime's `aclose` returns (before its Redis pool closes)."""
    runtime = await make_runtime(make_settings(), acme_config(acme))
    caller = asyncio.create_task(runtime.tracker.update("late", "queued"))
    await asyncio.sleep(0)  # handed over; the drainer has not sent it yet
    caller.cancel()
    await runtime.aclose()
    assert caller.cancelled()
    assert await redis_client.get(job_key("late")) is not None
