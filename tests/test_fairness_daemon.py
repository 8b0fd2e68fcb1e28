"""Rule 14 in the daemon: one seller's backlog, received first, does not hold back the other
sellers of its lane (moto's SQS, which hands messages out in arrival order; real Redis)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lanes.policy import Lane
from tests.fixtures_markets import acme_config
from tests.fixtures_worker import AcmeMarket, Lanes, RunningWorker, job, wait_until
from worker.fairness import RECALL_GUARD
from worker.queues import Delivery
from worker.settings import WorkerSettings
from worker.sqs import OutgoingMessage
from worker.tracking import Attempts

StartWorker = Callable[..., Awaitable[RunningWorker]]
NOISY = 200
JOB_SECONDS = "0.2"  # at the market: the worker starts work slower than it receives
QUIET = 20  # sellers, two jobs each


async def _start_order(
    acme: AcmeMarket,
    lanes: Lanes,
    settings: WorkerSettings,
    start_worker: StartWorker,
    *,
    concurrency: int = 4,
) -> tuple[list[str], int]:
    """Enqueue the backlog, then the quiet sellers' jobs; the sellers in the order their jobs
    reached the market (each job is one call), once all ran, and the messages set aside."""
    noisy = [
        ("noisy", job(seller="noisy", key=f"noisy-{n}", sleep=JOB_SECONDS)) for n in range(NOISY)
    ]
    quiet = [
        (f"q{s}", job(seller=f"q{s}", key=f"q{s}-{n}", sleep=JOB_SECONDS))
        for n in range(2)
        for s in range(QUIET)
    ]
    url = lanes.url(Lane.MEDIUM)
    for batch in range(0, len(noisy + quiet), 100):
        await lanes.sqs.send_batch(
            url,
            [OutgoingMessage(body=b, group_id=s) for s, b in (noisy + quiet)[batch : batch + 100]],
        )
    worker = await start_worker(settings, acme_config(acme, rps=200), concurrency=concurrency)

    async def all_ran() -> bool:
        return len(acme.calls()) >= NOISY + 2 * QUIET

    await wait_until(all_ran, within=120)
    await worker.stop()
    set_aside = sum(source.buffer.set_aside for source in worker.dispatcher.sources)
    return [arrival.query["key"].split("-")[0] for arrival in acme.calls()], set_aside


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_quiet_sellers_start_interleaved_with_a_backlog_received_before_them(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """200 jobs of one seller are enqueued before 20 quiet sellers' 40: every quiet job starts
    before a third of the backlog has, and no quiet seller waits for another's second job."""
    acme.rps = 200
    order, _ = await _start_order(
        acme, lanes, make_settings(seller_buffer=40, visibility_timeout=30), start_worker
    )
    quiet_at = [n for n, seller in enumerate(order) if seller != "noisy"]
    assert len(quiet_at) == 2 * QUIET
    assert order[: quiet_at[-1]].count("noisy") < NOISY // 3
    firsts = {seller: order.index(seller) for seller in set(order) if seller != "noisy"}
    seconds = {seller: len(order) - 1 - order[::-1].index(seller) for seller in firsts}
    assert max(firsts.values()) < min(seconds.values())  # round robin: all firsts, then seconds
    assert acme.violations == 0


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_a_backlog_held_to_its_share_of_the_slots_loses_nothing_and_runs_nothing_twice(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """32 slots and room for 1,000 messages: the buffer never fills to half, yet the backlog's
    seller, holding most of the lane's work, is held to its share of the slots from its first
    message and its surplus set aside (most of it by the receive's own visibility, no call).
    Every job still reaches the market exactly once."""
    acme.rps = 200
    settings = make_settings(seller_buffer=1000, visibility_timeout=30)
    order, set_aside = await _start_order(acme, lanes, settings, start_worker, concurrency=32)
    assert set_aside > 0
    keys = [arrival.query["key"] for arrival in acme.calls()]
    assert len(order) == NOISY + 2 * QUIET
    assert len(set(keys)) == len(keys)
    assert acme.violations == 0


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_with_the_buffer_off_the_backlog_runs_first(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """The same load with `LANES_SELLER_BUFFER=0` (the old FIFO): the quiet sellers wait for
    nearly the whole backlog."""
    acme.rps = 200
    order, _ = await _start_order(acme, lanes, make_settings(seller_buffer=0), start_worker)
    first_quiet = next(n for n, seller in enumerate(order) if seller != "noisy")
    assert first_quiet > NOISY - 20


@pytest.mark.slow
async def test_a_message_set_aside_here_is_spared_the_kept_result_read_when_it_returns(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One seller's surplus is set aside and received again by the same worker: those
    redeliveries never ran, so none reads Redis for a kept result; every job runs once."""
    reads: list[str] = []
    plain = Attempts.kept_result

    async def kept_result(self: Attempts, delivery: Delivery) -> dict[str, Any] | None:
        reads.append(delivery.message.message_id)
        return await plain(self, delivery)

    monkeypatch.setattr(Attempts, "kept_result", kept_result)
    jobs = 30
    await lanes.sqs.send_batch(
        lanes.url(Lane.MEDIUM),
        [
            OutgoingMessage(body=job(seller="one", key=f"k-{n}"), group_id="one")
            for n in range(jobs)
        ],
    )
    settings = make_settings(seller_buffer=10, visibility_timeout=30)
    worker = await start_worker(settings, acme_config(acme, rps=200), concurrency=2)

    async def all_ran() -> bool:
        return len(acme.calls()) >= jobs

    await wait_until(all_ran, within=60)
    await worker.stop()
    assert sum(source.buffer.set_aside for source in worker.dispatcher.sources) > 0
    assert reads == []
    keys = [arrival.query["key"] for arrival in acme.calls()]
    assert sorted(keys) == sorted(f"k-{n}" for n in range(jobs))


@pytest.mark.slow
async def test_a_worker_stopped_hands_back_what_it_set_aside(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: StartWorker,
) -> None:
    """A stop hands back the set-aside messages with the buffered ones: nothing this worker
    received and did not run stays in flight (one about to return comes back on its own)."""
    await lanes.sqs.send_batch(
        lanes.url(Lane.MEDIUM),
        [
            OutgoingMessage(body=job(seller="one", key=f"k-{n}", sleep="2"), group_id="one")
            for n in range(40)
        ],
    )
    settings = make_settings(seller_buffer=100, visibility_timeout=30, grace_seconds=5.0)
    worker = await start_worker(settings, acme_config(acme, rps=200), concurrency=2)

    async def set_aside() -> bool:
        return sum(source.buffer.set_aside for source in worker.dispatcher.sources) > 10

    await wait_until(set_aside)
    await worker.stop()

    async def none_in_flight() -> bool:
        return (await lanes.depth(Lane.MEDIUM))[1] == 0

    await wait_until(none_in_flight, within=RECALL_GUARD + 1.0)
    visible, _ = await lanes.depth(Lane.MEDIUM)
    assert visible + len(acme.calls()) == 40
