"""Side effects that survive a redelivery (docs/DESIGN.md rule 11, issue 9, issue 12 item 3):
a worker that stopped after its POST reached the market leaves the claim "posting" with no
lease; the next delivery takes it over *resumed* and checks what landed before it posts
again. Real Redis, the simulators, the worker's `JobProcessor`.

"The holder died after posting" is written in process, the way a SIGKILLed holder leaves
it: the job runs under its claim (the trace hook marks "posting" as the POST leaves), then
the lease is dropped as if it had lapsed. tests/test_worker_process.py kills a real worker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from lanes.policy import Lane
from markets import JobRequest
from markets.coupang.simulator import coupang_app
from markets.naver.simulator import naver_app
from tests.conftest import OwnRedis
from tests.fixtures_markets import (
    COUPANG_KEYS,
    COUPANG_VENDOR,
    NAVER_APP,
    Running,
    StartSimulator,
    acme_config,
    markets_config,
)
from tests.fixtures_worker import AcmeMarket, Lanes, deliver, job, results, wait_until
from tests.test_market_scenarios import (
    COUPANG_FAST,
    LOST,
    NAVER_FAST,
    START,
    dispatch,
    invoice,
    lose_next_answer,
)
from worker.envelope import Envelope
from worker.outcomes import Action, Outcome
from worker.queues import Delivery, QueueName
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.sqs import SqsMessage

MakeRuntime = Callable[[WorkerSettings, Any], Awaitable[Runtime]]
_messages = itertools.count()


@dataclass(frozen=True)
class Simulators:
    coupang: Running
    naver: Running


@pytest.fixture
async def sims(start_simulator: StartSimulator) -> Simulators:
    """Both simulators, as the market scenarios start them."""
    return Simulators(
        coupang=await start_simulator(coupang_app(rate=40, start=START)),
        naver=await start_simulator(naver_app(rate=50, orders=60, start=START, days=1)),
    )


@pytest.fixture
async def runtime(
    sims: Simulators, make_settings: Callable[..., WorkerSettings], make_runtime: MakeRuntime
) -> Runtime:
    """A worker on both simulators (a lost answer: the client gives up after LOST s)."""
    lost = {"timeout": LOST}
    config = markets_config(
        coupang=sims.coupang.url,
        naver=sims.naver.url,
        extra={
            "coupang": {
                **COUPANG_FAST,
                "endpoints": {"inquiry_reply": lost, "invoices": lost},
            },
            "naver": {
                "endpoints": {**NAVER_FAST["endpoints"], "inquiry_answer": {"rps": 50, **lost}}
            },
        },
    )
    settings = make_settings(credentials={"coupang": COUPANG_KEYS, "naver": NAVER_APP})
    return await make_runtime(settings, config)


def envelope(request: JobRequest, job_id: str) -> Envelope:
    return Envelope(
        kind=request.kind,
        market=request.market,
        seller=request.seller,
        payload=request.payload,
        id=job_id,
    )


def delivery(prefix: str, job: Envelope, *, receive: int = 2) -> Delivery:
    """A high-lane delivery of `job`, as SQS hands it out (`receive`: its receive count)."""
    message = SqsMessage(
        message_id=f"m-{next(_messages)}",
        receipt_handle="unused",
        body=job.body(),
        attributes={"ApproximateReceiveCount": str(receive)},
    )
    return Delivery(message=message, queue=QueueName(prefix, job.market, Lane.HIGH), url="")


async def killed_after_posting(runtime: Runtime, request: JobRequest, job_id: str) -> None:
    """What a worker SIGKILLed right after its POST reached the market leaves behind: the
    market acted, the claim says "posting", and its lease is gone."""
    guard = runtime.guard
    claim = await guard.begin(request.market, request.seller, request.kind, job_id)
    async with guard.held(claim):
        await runtime.markets.run(request, Lane.HIGH)
    assert claim.posting
    await runtime.store.client.delete(claim.lease)


async def redelivered(runtime: Runtime, lanes: Lanes, job: Envelope) -> Outcome:
    return await runtime.processor.process(delivery(lanes.prefix, job), deadline=None)


async def test_a_coupang_reply_posted_by_a_killed_worker_ends_as_success_once(
    runtime: Runtime, lanes: Lanes, sims: Simulators
) -> None:
    """The redelivery resumes: its reply gets "already answered", which is success (not a
    permanent error on what looks like its first attempt). One reply at the market."""
    request = JobRequest(
        "answer_inquiry",
        "coupang",
        COUPANG_VENDOR,
        {"inquiry_id": 3_000_002, "content": "내일 발송", "reply_by": "u"},
    )
    await killed_after_posting(runtime, request, "reply-1")
    outcome = await redelivered(runtime, lanes, envelope(request, "reply-1"))
    assert (outcome.action, outcome.label) == (Action.DELETE, "done")
    assert outcome.result is not None
    assert outcome.result["data"]["answer"]["already_done"] is True
    assert sims.coupang.state.effects["reply:3000002"] == 1


async def test_a_naver_answer_posted_by_a_killed_worker_is_looked_up_not_posted_again(
    runtime: Runtime, lanes: Lanes, sims: Simulators
) -> None:
    """Naver would take a second answer: the resumed job finds ours and posts nothing."""
    request = JobRequest("answer_inquiry", "naver", "s", {"inquiry_no": 9_000_001, "answer": "네"})
    await killed_after_posting(runtime, request, "answer-1")
    outcome = await redelivered(runtime, lanes, envelope(request, "answer-1"))
    assert (outcome.action, outcome.label) == (Action.DELETE, "done")
    assert outcome.result is not None
    assert outcome.result["data"]["answer"] == {"already_done": True}
    assert sims.naver.state.arrived["inquiry_answer"] == 1
    assert sims.naver.state.effects["answer:9000001"] == 1


async def test_an_invoice_upload_of_a_killed_worker_is_checked_and_only_the_rest_posted(
    runtime: Runtime, lanes: Lanes, sims: Simulators
) -> None:
    """The killed worker's upload shipped box 1 only (box 2 failed at the market): the resumed
    job checks both boxes and posts box 2 alone. Each box posted once, each shipped once."""
    boxes = {"shipment_box_ids": [600_000_001, 600_000_002]}
    ack = JobRequest("acknowledge_orders", "coupang", COUPANG_VENDOR, boxes)
    await runtime.markets.run(ack, Lane.HIGH)  # the market ships acknowledged orders only
    first = JobRequest("ship_order", "coupang", COUPANG_VENDOR, {"invoices": [invoice(1)]})
    await killed_after_posting(runtime, first, "ship-1")
    both = JobRequest(
        "ship_order", "coupang", COUPANG_VENDOR, {"invoices": [invoice(1), invoice(2)]}
    )
    outcome = await redelivered(runtime, lanes, envelope(both, "ship-1"))
    assert (outcome.action, outcome.label) == (Action.DELETE, "done")
    assert outcome.result is not None
    one, two = "600000001/70000001", "600000002/70000002"
    assert sorted(outcome.result["data"]["shipped"]) == [one, two]
    assert sims.coupang.state.arrived["invoices"] == 2
    assert dict(sims.coupang.state.items_posted) == {one: 1, two: 1}
    assert sims.coupang.state.effects[f"invoice:{one}"] == 1
    assert sims.coupang.state.effects[f"invoice:{two}"] == 1


async def test_a_naver_dispatch_of_a_killed_worker_is_checked_not_posted_again(
    runtime: Runtime, lanes: Lanes, sims: Simulators
) -> None:
    """The product order carries our tracking number: the resumed job posts no dispatch."""
    request = JobRequest("ship_order", "naver", "s", {"dispatches": [dispatch(4)]})
    await killed_after_posting(runtime, request, "dispatch-1")
    outcome = await redelivered(runtime, lanes, envelope(request, "dispatch-1"))
    assert (outcome.action, outcome.label) == (Action.DELETE, "done")
    assert outcome.result is not None
    assert outcome.result["data"] == {"shipped": ["20250000000000041"]}
    assert sims.naver.state.arrived["dispatch"] == 1
    assert sims.naver.state.effects["dispatch:20250000000000041"] == 1


async def test_a_post_that_never_reached_the_market_is_posted_after_the_check(
    runtime: Runtime, lanes: Lanes, sims: Simulators
) -> None:
    """The holder was marked "posting" but died before its request arrived: the resumed job
    looks the inquiry up, finds no answer, and only then posts it, once."""
    request = JobRequest("answer_inquiry", "naver", "s", {"inquiry_no": 9_000_002, "answer": "네"})
    key = runtime.guard.key("naver", "s", "answer_inquiry", "answer-2")
    await runtime.store.client.set(key, "posting:dead-holder", ex=600)
    outcome = await redelivered(runtime, lanes, envelope(request, "answer-2"))
    assert (outcome.action, outcome.label) == (Action.DELETE, "done")
    assert sims.naver.state.arrived["inquiries"] >= 1
    assert sims.naver.state.arrived["inquiry_answer"] == 1
    assert sims.naver.state.effects["answer:9000002"] == 1
    assert (await runtime.store.client.get(key) or b"").startswith(b"done:")


@pytest.mark.slow
async def test_a_resumed_job_whose_check_fails_is_released_still_posting(
    runtime: Runtime, lanes: Lanes, sims: Simulators
) -> None:
    """The market fails (503) while the resumed job checks: the message is released, not
    dead-lettered, and the claim stays "posting" with no lease, so the next delivery
    resumes again and checks first: one answer at the market."""
    request = JobRequest("answer_inquiry", "naver", "s", {"inquiry_no": 9_000_003, "answer": "네"})
    await killed_after_posting(runtime, request, "answer-3")
    job = envelope(request, "answer-3")
    sims.naver.state.faults.error_rate = 1.0
    failed = await runtime.processor.process(
        delivery(lanes.prefix, job), deadline=time.monotonic() + 1.5
    )
    assert failed.action is Action.RELEASE
    key = runtime.guard.key("naver", "s", "answer_inquiry", "answer-3")
    assert (await runtime.store.client.get(key) or b"").startswith(b"posting:")
    assert not await runtime.store.client.exists(f"{key}:lease")
    sims.naver.state.faults.error_rate = 0.0
    outcome = await redelivered(runtime, lanes, job)
    assert (outcome.action, outcome.label) == (Action.DELETE, "done")
    assert sims.naver.state.effects["answer:9000003"] == 1


@pytest.mark.slow
async def test_a_reply_whose_answer_was_lost_is_resumed_by_the_redelivery(
    runtime: Runtime, lanes: Lanes, sims: Simulators
) -> None:
    """Issue 9: the reply lands, its answer is lost; nothing else of that run leaves (the
    hook), the delivery is released as transient with the claim still "posting". A
    redelivery waits (`claim_busy`) while the market may still act on the reply
    (`settle_seconds`), then resumes: "already answered" is success. One reply, one result."""
    lose_next_answer(sims.coupang, "inquiry_reply")
    request = JobRequest(
        "answer_inquiry",
        "coupang",
        COUPANG_VENDOR,
        {"inquiry_id": 3_000_004, "content": "네", "reply_by": "u"},
    )
    job = envelope(request, "reply-2")
    first = await runtime.processor.process(delivery(lanes.prefix, job, receive=1), deadline=None)
    assert (first.action, first.label) == (Action.RELEASE, "transient")
    early = await redelivered(runtime, lanes, job)
    assert (early.action, early.label) == (Action.RELEASE, "claim_busy")
    await asyncio.sleep(runtime.settings.settle_seconds)
    again = await redelivered(runtime, lanes, job)
    assert (again.action, again.label) == (Action.DELETE, "done")
    assert sims.coupang.state.arrived["inquiry_reply"] == 2
    assert sims.coupang.state.effects["reply:3000004"] == 1
    assert [record["id"] for record in results(runtime.settings)] == ["reply-2"]


async def test_a_call_post_of_a_killed_worker_stops_for_a_person(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
) -> None:
    """A `call` POST: nothing can check what landed, so the resumed job is dead-lettered
    "outcome unknown" without posting, on every redelivery. The market saw one POST."""
    runtime = await make_runtime(make_settings(), acme_config(acme))
    request = JobRequest("call", "acme", "s-1", {"endpoint": "ship", "params": {"order": "o"}})
    await killed_after_posting(runtime, request, "ship-k")
    for _ in range(2):
        (again,) = await deliver(lanes, Lane.HIGH, [job("ship", id="ship-k", order="o")])
        outcome = await runtime.processor.process(again, deadline=None)
        assert outcome.action is Action.DEAD_LETTER
        assert outcome.reason.startswith("outcome unknown: ")
    assert len(acme.calls("/ship")) == 1
    assert results(runtime.settings) == []


async def test_a_redis_restart_mid_post_and_a_duplicate_delivery_post_once(
    acme: AcmeMarket,
    own_redis: OwnRedis,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: MakeRuntime,
) -> None:
    """Issue 25 (2): Redis restarts empty while a worker's POST is in flight, and a duplicate
    delivery of the same message runs on another worker. The duplicate does not take the
    missing record at its word: it waits while the holder puts its record back, then finds
    the holder's result. The market sees one POST; the duplicate ends as a duplicate."""
    settings = make_settings(redis_url=own_redis.server.url)
    holder = await make_runtime(settings, acme_config(acme))
    other = await make_runtime(settings, acme_config(acme))
    other.guard.restart_guard = True  # a worker on a Redis that just restarted
    (message,) = await deliver(lanes, Lane.HIGH, [job("ship", id="ship-r", order="o", sleep=2)])
    deadline = time.monotonic() + 60
    posting = asyncio.create_task(holder.processor.process(message, deadline=deadline))

    async def posted() -> bool:
        return bool(acme.calls("/ship"))

    await wait_until(posted)  # the POST is in flight: the market answers after 2 s
    await asyncio.to_thread(own_redis.server.stop)
    await asyncio.to_thread(own_redis.server.start)
    duplicate = await other.processor.process(message, deadline=deadline)
    first = await posting
    assert (first.action, first.label) == (Action.DELETE, "done")
    assert (duplicate.action, duplicate.label) == (Action.DELETE, "duplicate")
    assert len(acme.calls("/ship")) == 1
