"""What a seller tool meets, against the simulators: many sellers on one Naver app, every
order of a window exactly once, changes while paging, side effects whose answer was lost,
partial shipping failures."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from lanes import Lane, RedisStore
from markets import JobRequest, Markets
from markets.coupang.jobs import KST
from markets.coupang.simulator import coupang_app
from markets.coupang.simulator_data import COUPANG_STATUSES
from markets.errors import OutcomeUnknown, PartialFailure
from markets.naver.simulator import naver_app
from markets.watermark import Watermarks
from scripts.tools.backfill import window_jobs
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    NAVER_APP,
    MakeMarkets,
    Running,
    StartSimulator,
    coupang_job,
    market_settings,
    markets_config,
)

START = datetime(2025, 7, 1, tzinfo=UTC)
NAVER_FAST: dict[str, Any] = {
    "endpoints": {
        name: {"rps": 50}
        for name in (
            "changed_orders",
            "order_details",
            "dispatch",
            "inquiries",
            "inquiry_answer",
        )
    },
}
COUPANG_FAST: dict[str, Any] = {"groups": {"vendor": {"rps": 20}}}
# A lost answer: the market acts, the client gives up after 0.3 s, the answer comes at 1 s.
LOST = 0.3


def invoice(index: int) -> dict[str, object]:
    return {
        "shipment_box_id": 600_000_000 + index,
        "order_id": 25_000_000_000 + index,
        "vendor_item_id": 70_000_000 + index,
        "delivery_company_code": "CJGLS",
        "invoice_number": f"INV{index}",
    }


def box(index: int) -> str:
    """The invoice item of `invoice(index)`: shipmentBoxId/vendorItemId."""
    return f"{600_000_000 + index}/{70_000_000 + index}"


async def acknowledge(markets: Markets, *indexes: int) -> None:
    """Acknowledge the orders first: the market ships only acknowledged (INSTRUCT) orders."""
    boxes = [600_000_000 + index for index in indexes]
    await markets.run(coupang_job("acknowledge_orders", shipment_box_ids=boxes), Lane.HIGH)


def dispatch(index: int) -> dict[str, object]:
    return {
        "product_order_id": f"2025{index:012d}1",
        "delivery_company_code": "CJGLS",
        "tracking_number": f"TRK{index}",
    }


@pytest.fixture
async def coupang(start_simulator: StartSimulator) -> Running:
    """120 orders over 30 days from 2025-07-01, the simulator's faster vendor limit."""
    return await start_simulator(coupang_app(rate=40, start=START))


@pytest.fixture
async def naver(start_simulator: StartSimulator) -> Running:
    return await start_simulator(naver_app(rate=50, orders=60, start=START, days=1))


async def coupang_markets(make_markets: MakeMarkets, sim: Running, **table: Any) -> Markets:
    return await make_markets(
        markets_config(coupang=sim.url, extra={"coupang": {**COUPANG_FAST, **table}})
    )


async def naver_markets(
    make_markets: MakeMarkets,
    sim: Running,
    *,
    credentials: dict[str, str] | None = None,
    **table: Any,
) -> Markets:
    config = markets_config(naver=sim.url, extra={"naver": {**NAVER_FAST, **table}})
    settings = market_settings(naver={**NAVER_APP, **(credentials or {})})
    return await make_markets(config, settings=settings)


def lose_next_answer(sim: Running, endpoint: str) -> None:
    sim.state.faults.lose_answer[endpoint] = 1
    sim.state.faults.lost_answer_delay = 1.0


# -- many sellers ------------------------------------------------------------------------


@pytest.mark.slow
async def test_three_naver_sellers_each_call_on_their_own_seller_token(
    naver: Running, make_markets: MakeMarkets
) -> None:
    """type=SELLER: one token per seller account, each seller's calls on its own (the
    simulator counts calls by the token's account)."""
    markets = await naver_markets(
        make_markets,
        naver,
        credentials={
            "s-1_account_id": "acc-1",
            "s-2_account_id": "acc-2",
            "s-3_account_id": "acc-3",
        },
        options={"token_type": "SELLER"},
    )
    calls = {}
    window = {"since": START.isoformat(), "until": (START + timedelta(days=1)).isoformat()}
    for seller, account in (("s-1", "acc-1"), ("s-2", "acc-2"), ("s-3", "acc-3")):
        result = await markets.run(
            JobRequest("collect_orders", "naver", seller, window), Lane.MEDIUM
        )
        assert result.data["count"] == 60
        calls[account] = result.calls
    assert naver.state.tokens_issued == 3
    assert dict(naver.state.accounts) == calls


# -- every order exactly once ------------------------------------------------------------


async def test_a_60_day_coupang_backfill_returns_every_order_of_every_status_once(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Backfill windows of at most 31 days, all six statuses each: 180 orders, once each.
    (The old code asked ACCEPT only and sent the 60 days as one refused request.)"""
    sim = await start_simulator(
        coupang_app(rate=40, orders=180, start=START, days=60, statuses=COUPANG_STATUSES)
    )
    markets = await coupang_markets(make_markets, sim)
    market = markets.config.market("coupang")
    jobs = list(
        window_jobs("coupang", market, COUPANG_VENDOR, date(2025, 7, 1), date(2025, 8, 31), None)
    )
    assert len(jobs) == 2
    seen: list[int] = []
    for _where, body in jobs:
        payload = json.loads(body)["payload"]
        result = await markets.run(coupang_job("collect_orders", **payload), Lane.LOW)
        seen.extend(order["shipmentBoxId"] for order in result.data["orders"])
    assert sorted(seen) == [600_000_000 + index for index in range(180)]


async def test_one_coupang_job_over_60_days_is_split_into_31_day_queries(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """`collect_orders` itself splits a long window; the simulator refuses any query over
    31 days, so the job succeeding shows each was within."""
    sim = await start_simulator(
        coupang_app(rate=40, orders=60, start=START, days=60, statuses=COUPANG_STATUSES)
    )
    markets = await coupang_markets(make_markets, sim)
    request = coupang_job("collect_orders", since="2025-07-01", until="2025-08-31")
    result = await markets.run(request, Lane.LOW)
    assert result.data["count"] == 60
    assert sim.state.statuses[400] == 0


async def test_naver_orders_changing_while_paged_are_collected_by_the_next_run(
    start_simulator: StartSimulator, make_markets: MakeMarkets, store: RedisStore
) -> None:
    """Incremental runs from the seller's watermark: a product order that changes while its
    window is paged leaves the window (old code: lost), and the next run, starting at the
    watermark minus the overlap, collects it: all 240, with its new status."""
    now = datetime.now(UTC)
    sim = await start_simulator(
        naver_app(rate=50, orders=240, start=now - timedelta(days=2), days=1)
    )
    markets = await naver_markets(make_markets, sim, options={"settle_seconds": "0"})
    await Watermarks(store.client).advance("naver", "s-1", "orders", now - timedelta(days=3))
    sim.state.faults.change_while_paging = 1
    run = JobRequest("collect_orders", "naver", "s-1", {"limit_count": 50})
    first = await markets.run(run, Lane.MEDIUM)
    assert first.data["count"] == 239
    second = await markets.run(run, Lane.MEDIUM)
    ids = {change["productOrderId"] for change in first.data["statuses"]}
    moved = [change for change in second.data["statuses"] if change["productOrderId"] not in ids]
    assert len(ids) + len(moved) == 240
    assert [change["productOrderStatus"] for change in moved] == ["PURCHASE_DECIDED"]


@pytest.mark.slow
async def test_coupang_orders_changing_status_while_paged_are_still_collected(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """An ACCEPT order moving on to INSTRUCT while ACCEPT is paged is read with INSTRUCT."""
    sim = await start_simulator(coupang_app(rate=40, start=START))
    markets = await coupang_markets(make_markets, sim)
    sim.state.faults.change_while_paging = 3
    request = coupang_job("collect_orders", since="2025-06-30", until="2025-08-01", max_per_page=10)
    result = await markets.run(request, Lane.MEDIUM)
    assert result.data["count"] == 120


async def test_incremental_coupang_collection_moves_its_watermark_once_delivered(
    coupang: Running, make_markets: MakeMarkets, store: RedisStore
) -> None:
    """Without `since`: from the watermark minus a day through today. The job only says
    where the watermark goes; it moves when the result is delivered (`Markets.delivered`)."""
    markets = await coupang_markets(make_markets, coupang)
    watermarks = Watermarks(store.client)
    last = datetime.now(UTC) - timedelta(days=2)
    await watermarks.advance("coupang", COUPANG_VENDOR, "orders", last)
    result = await markets.run(coupang_job("collect_orders"), Lane.MEDIUM)
    assert result.data["since"] == (last - timedelta(days=1)).astimezone(KST).date().isoformat()
    held = await watermarks.get("coupang", COUPANG_VENDOR, "orders")
    assert held is not None
    assert abs(held - last) < timedelta(milliseconds=1)
    assert result.watermark is not None
    record = {"market": "coupang", "seller": COUPANG_VENDOR, "watermark": result.watermark.record()}
    await markets.delivered(record)
    moved = await watermarks.get("coupang", COUPANG_VENDOR, "orders")
    assert moved is not None
    assert moved > datetime.now(UTC) - timedelta(minutes=1)


# -- side effects whose answer was lost --------------------------------------------------


async def test_a_timed_out_coupang_inquiry_reply_ends_as_success_replied_once(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """The reply lands, its answer is lost; sent again, "already answered" is success."""
    markets = await coupang_markets(
        make_markets, coupang, endpoints={"inquiry_reply": {"timeout": LOST}}
    )
    lose_next_answer(coupang, "inquiry_reply")
    request = coupang_job("answer_inquiry", inquiry_id=3_000_002, content="내일 발송", reply_by="u")
    result = await markets.run(request, Lane.HIGH)
    assert result.data["answer"]["already_done"] is True
    assert coupang.state.effects["reply:3000002"] == 1


async def test_a_timed_out_naver_inquiry_answer_is_checked_not_posted_again(
    naver: Running, make_markets: MakeMarkets
) -> None:
    """Naver would take a second answer: the inquiry is looked up first, and it has ours."""
    markets = await naver_markets(
        make_markets, naver, endpoints={"inquiry_answer": {"timeout": LOST}}
    )
    lose_next_answer(naver, "inquiry_answer")
    request = JobRequest("answer_inquiry", "naver", "s", {"inquiry_no": 9_000_001, "answer": "네"})
    result = await markets.run(request, Lane.HIGH)
    assert result.data["answer"] == {"already_done": True}
    assert naver.state.arrived["inquiry_answer"] == 1
    assert naver.state.effects["answer:9000001"] == 1


async def test_a_timed_out_coupang_invoice_upload_is_checked_not_posted_again(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """The upload lands, its answer is lost: the box carries our invoice, so it is done."""
    markets = await coupang_markets(
        make_markets, coupang, endpoints={"invoices": {"timeout": LOST}}
    )
    await acknowledge(markets, 1)
    lose_next_answer(coupang, "invoices")
    result = await markets.run(coupang_job("ship_order", invoices=[invoice(1)]), Lane.HIGH)
    assert result.data == {"shipped": [box(1)]}
    assert coupang.state.arrived["invoices"] == 1
    assert coupang.state.effects[f"invoice:{box(1)}"] == 1


async def test_a_timed_out_naver_dispatch_is_checked_not_posted_again(
    naver: Running, make_markets: MakeMarkets
) -> None:
    markets = await naver_markets(make_markets, naver, endpoints={"dispatch": {"timeout": LOST}})
    lose_next_answer(naver, "dispatch")
    request = JobRequest("ship_order", "naver", "s", {"dispatches": [dispatch(4)]})
    result = await markets.run(request, Lane.HIGH)
    assert result.data == {"shipped": ["20250000000000041"]}
    assert naver.state.arrived["dispatch"] == 1
    assert naver.state.effects["dispatch:20250000000000041"] == 1


async def test_a_timed_out_post_that_nothing_can_check_stops_for_a_person(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """The generic `call` of a POST whose answer was lost: OutcomeUnknown, never re-posted."""
    markets = await coupang_markets(
        make_markets, coupang, endpoints={"inquiry_reply": {"timeout": LOST}}
    )
    lose_next_answer(coupang, "inquiry_reply")
    request = coupang_job(
        "call",
        endpoint="inquiry_reply",
        path={"inquiryId": 3_000_003},
        json={"content": "네", "vendorId": COUPANG_VENDOR, "replyBy": "u"},
    )
    with pytest.raises(OutcomeUnknown, match="not sent again"):
        await markets.run(request, Lane.HIGH)
    assert coupang.state.arrived["inquiry_reply"] == 1


async def test_a_resumed_post_that_nothing_can_check_is_not_sent(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """`resumed` (an earlier attempt may have landed): a `call` POST is OutcomeUnknown at
    once, nothing sent; a Coupang reply is sent, and posts the reply that never landed."""
    markets = await coupang_markets(make_markets, coupang)
    body = {"content": "네", "vendorId": COUPANG_VENDOR, "replyBy": "u"}
    call = coupang_job("call", endpoint="inquiry_reply", path={"inquiryId": 3_000_005}, json=body)
    with pytest.raises(OutcomeUnknown, match="not sent again"):
        await markets.run(call, Lane.HIGH, resumed=True)
    assert coupang.state.arrived["inquiry_reply"] == 0
    reply = coupang_job("answer_inquiry", inquiry_id=3_000_005, content="네", reply_by="u")
    result = await markets.run(reply, Lane.HIGH, resumed=True)
    assert "already_done" not in result.data["answer"]
    assert coupang.state.effects["reply:3000005"] == 1


# -- partial failures --------------------------------------------------------------------


async def test_a_partial_coupang_shipment_is_retried_for_the_failed_item_only(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """One box answers retryRequired: only that box is posted again, until it succeeds."""
    markets = await coupang_markets(make_markets, coupang)
    await acknowledge(markets, 1, 2, 3)
    coupang.state.faults.retry_once = {"600000002"}
    request = coupang_job("ship_order", invoices=[invoice(1), invoice(2), invoice(3)])
    result = await markets.run(request, Lane.HIGH)
    assert sorted(result.data["shipped"]) == [box(1), box(2), box(3)]
    assert dict(coupang.state.items_posted) == {box(1): 1, box(2): 2, box(3): 1}


async def test_a_partial_naver_dispatch_is_retried_for_the_failed_item_only(
    naver: Running, make_markets: MakeMarkets
) -> None:
    markets = await naver_markets(make_markets, naver)
    naver.state.faults.retry_once = {"20250000000000061"}
    request = JobRequest("ship_order", "naver", "s", {"dispatches": [dispatch(5), dispatch(6)]})
    result = await markets.run(request, Lane.HIGH)
    assert sorted(result.data["shipped"]) == ["20250000000000051", "20250000000000061"]
    assert naver.state.items_posted["20250000000000051"] == 1
    assert naver.state.items_posted["20250000000000061"] == 2


async def test_items_refused_for_good_are_listed_one_by_one(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """A refused box ends the job as a PartialFailure (a dead letter with the reason) that
    names each failed item and what was done."""
    markets = await coupang_markets(make_markets, coupang)
    await acknowledge(markets, 4)
    missing = {**invoice(4), "shipment_box_id": 699_999_999}
    request = coupang_job("ship_order", invoices=[invoice(4), missing])
    with pytest.raises(PartialFailure) as raised:
        await markets.run(request, Lane.HIGH)
    assert raised.value.done == [box(4)]
    gone = "699999999/70000004"
    assert raised.value.failed == {gone: "FAIL: shipmentBoxId not found"}
    assert f"{gone}: FAIL: shipmentBoxId not found" in str(raised.value)
