"""The Naver Commerce job kinds against the Naver simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lanes import Lane
from markets import Markets, PermanentError
from markets.errors import PartialFailure
from markets.simulators import naver_app
from tests.fixtures_markets import MakeMarkets, Running, StartSimulator, market_job, markets_config

START = datetime(2025, 7, 1, tzinfo=UTC)
FAST_NAVER = {
    "naver": {
        "endpoints": {
            name: {"rps": 20}
            for name in ("changed_orders", "order_details", "order_product_ids", "dispatch")
        }
        | {"inquiry_answer": {"rps": 20}, "qna_answer": {"rps": 20}},
        "groups": {"origin_products": {"rps": 20}, "channel_products": {"rps": 20}},
    }
}


@pytest.fixture
async def sim(start_simulator: StartSimulator) -> Running:
    """250 product orders over 2 days from 2025-07-01, three per change moment."""
    return await start_simulator(naver_app(rate=20, orders=250, start=START, days=2))


@pytest.fixture
async def markets(sim: Running, make_markets: MakeMarkets) -> Markets:
    return await make_markets(markets_config(naver=sim.url, extra=FAST_NAVER))


job = market_job("naver", "seller-1")


@pytest.mark.slow
async def test_collect_orders_follows_more_pages_exactly_once(
    sim: Running, markets: Markets
) -> None:
    """Pages of 7 (moreFrom + moreSequence through ties), over 24-hour spans: each once."""
    request = job(
        "collect_orders",
        since=(START - timedelta(hours=1)).isoformat(),
        until=(START + timedelta(days=3)).isoformat(),
        limit_count=7,
    )
    result = await markets.run(request, Lane.MEDIUM)
    ids = [status["productOrderId"] for status in result.data["statuses"]]
    assert sorted(ids) == [f"2025{i:012d}1" for i in range(250)]
    assert result.data["count"] == 250
    assert sim.state.served["changed_orders"] > 250 // 7
    details = result.data["orders"]
    assert sorted(item["productOrder"]["productOrderId"] for item in details) == sorted(ids)
    assert sim.state.served["order_details"] == 1


async def test_collect_order_by_order_id(markets: Markets) -> None:
    """An order's product order ids, then their details."""
    result = await markets.run(job("collect_order", order_id="2025000000000003"), Lane.LOW)
    found = [item["productOrder"]["productOrderId"] for item in result.data["orders"]]
    assert found == ["202500000000000" + "61", "202500000000000" + "71"]
    assert result.calls == 2


async def test_ship_order_dispatches(markets: Markets) -> None:
    """Dispatch marks the product order delivering; the same dispatch again (a retry whose
    answer was lost) is success; another tracking number fails permanently."""
    dispatch = {
        "product_order_id": "20250000000000011",
        "delivery_company_code": "CJGLS",
        "tracking_number": "123456789012",
    }
    request = job("ship_order", dispatches=[dispatch])
    result = await markets.run(request, Lane.HIGH)
    assert result.data == {"shipped": ["20250000000000011"]}
    again = await markets.run(request, Lane.HIGH)
    assert again.data == {"shipped": ["20250000000000011"]}
    other = job("ship_order", dispatches=[{**dispatch, "tracking_number": "999"}])
    with pytest.raises(PartialFailure, match="20250000000000011: INVALID_STATUS") as raised:
        await markets.run(other, Lane.HIGH)
    assert raised.value.done == []


async def test_answer_inquiry_and_qna(markets: Markets) -> None:
    """A customer inquiry and a product question are both answered."""
    inquiry = await markets.run(job("answer_inquiry", inquiry_no=9_000_001, answer="네"), Lane.HIGH)
    assert inquiry.data["answer"]["data"]["inquiryCommentNo"] == 90_000_010
    qna = await markets.run(job("answer_inquiry", question_id=77, answer="네"), Lane.HIGH)
    assert qna.data["answer"] == {"questionId": 77}


async def test_update_product_reads_and_writes_back(markets: Markets) -> None:
    """Price and stock are changed on the origin product, the rest kept."""
    before = await markets.run(job("get_product", origin_product_no=5_000_003), Lane.LOW)
    result = await markets.run(
        job("update_product", origin_product_no=5_000_003, price=12_300, stock=4), Lane.LOW
    )
    assert result.calls == 2
    after = await markets.run(job("get_product", origin_product_no=5_000_003), Lane.LOW)
    origin = after.data["product"]["originProduct"]
    assert (origin["salePrice"], origin["stockQuantity"]) == (12_300, 4)
    assert origin["name"] == before.data["product"]["originProduct"]["name"]


async def test_get_channel_product(markets: Markets) -> None:
    """A channel product is found by its own number."""
    result = await markets.run(job("get_product", channel_product_no=8_000_002), Lane.LOW)
    assert result.data["product"]["originProductNo"] == 5_000_002


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("collect_orders", {"since": "2025-07-01T00:00:00"}, "timezone"),
        ("collect_orders", {"since": "2025-07-01T00:00:00Z", "limit_count": 301}, "300"),
        ("collect_order", {}, "exactly one"),
        ("ship_order", {"dispatches": []}, "at least 1"),
        ("update_product", {"origin_product_no": 1}, "give price or stock"),
    ],
)
async def test_invalid_payloads_are_permanent(
    markets: Markets, kind: str, payload: dict[str, object], message: str
) -> None:
    """Each kind's payload is validated before anything is sent."""
    with pytest.raises(PermanentError, match=message):
        await markets.run(job(kind, **payload), Lane.LOW)


async def test_a_collected_order_cancelled_an_hour_later_is_reported_by_the_next_repoll(
    sim: Running, markets: Markets
) -> None:
    """Issue 18: the worker keeps, per seller, the orders collected but not yet final;
    `repoll_orders` without ids reads those again. A buyer cancels one an hour after its
    collection (the simulator's clock): the next repoll reports it finished (CANCELED)
    and stops tracking it; the others stay open."""
    window = {"since": START.isoformat(), "until": (START + timedelta(hours=2)).isoformat()}
    collected = await markets.run(job("collect_orders", **window, details=False), Lane.MEDIUM)
    ids = sorted(change["productOrderId"] for change in collected.data["statuses"])
    assert len(ids) == 12
    cancelled = ids[2]
    sim.state.schedule(sim.state.now() + timedelta(hours=1), cancelled, "CANCELED")
    before = await markets.run(job("repoll_orders"), Lane.LOW)
    assert before.data["finished"] == []
    sim.state.advance(3600)
    after = await markets.run(job("repoll_orders"), Lane.LOW)
    assert after.data["finished"] == [cancelled]
    statuses = {
        order["productOrder"]["productOrderId"]: order["productOrder"]["productOrderStatus"]
        for order in after.data["orders"]
    }
    assert statuses[cancelled] == "CANCELED"
    again = await markets.run(job("repoll_orders"), Lane.LOW)
    assert sorted(again.data["unfinished"]) == [each for each in ids if each != cancelled]


async def test_acknowledge_orders_places_them_once(sim: Running, markets: Markets) -> None:
    """발주 확인 for up to 30 product orders; a second run finds them placed, changes nothing."""
    ids = ["20250000000000001", "20250000000000011"]
    first = await markets.run(job("acknowledge_orders", product_order_ids=ids), Lane.HIGH)
    assert sorted(first.data["acknowledged"]) == ids
    again = await markets.run(job("acknowledge_orders", product_order_ids=ids), Lane.HIGH)
    assert sorted(again.data["acknowledged"]) == ids
    assert {sim.state.effects[f"confirm:{each}"] for each in ids} == {1}
    details = await markets.run(job("collect_order", product_order_ids=ids), Lane.LOW)
    assert {order["productOrder"]["placeOrderStatus"] for order in details.data["orders"]} == {"OK"}


async def test_a_cancel_claim_is_approved_and_a_missing_return_claim_refused(
    sim: Running, markets: Markets
) -> None:
    """approve_cancel on a product order whose buyer asked to cancel: it is CANCELED; a
    return action on it is the market's 400 (no return claim), a permanent error."""
    claimed = "20250000000000091"
    approved = await markets.run(
        job("act_on_claim", product_order_id=claimed, action="approve_cancel"), Lane.HIGH
    )
    assert approved.data["action"] == "approve_cancel"
    assert sim.state.effects[f"claim:{claimed}:CANCEL_DONE"] == 1
    details = await markets.run(job("collect_order", product_order_ids=[claimed]), Lane.LOW)
    assert details.data["orders"][0]["productOrder"]["productOrderStatus"] == "CANCELED"
    reject = job("act_on_claim", product_order_id=claimed, action="reject_return", reason="파손")
    with pytest.raises(PermanentError, match="no RETURN claim"):
        await markets.run(reject, Lane.HIGH)


async def test_product_questions_are_collected_and_answered(sim: Running, markets: Markets) -> None:
    """Product Q&A from a window, every page; an answered question leaves the unanswered."""
    window = {"since": START.isoformat(), "until": (START + timedelta(days=3)).isoformat()}
    every = await markets.run(job("collect_qnas", **window), Lane.MEDIUM)
    assert every.data["count"] == 12
    await markets.run(job("answer_inquiry", question_id=7_000_000, answer="M입니다."), Lane.HIGH)
    open_ones = await markets.run(job("collect_qnas", **window, answered=False), Lane.MEDIUM)
    assert open_ones.data["count"] == 11
    assert sim.state.effects["qna:7000000"] == 1
