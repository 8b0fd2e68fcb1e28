"""The Coupang job kinds against the Coupang simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lanes import Lane
from markets import JobRequest, Markets, PermanentError
from markets.errors import PartialFailure
from markets.simulators import coupang_app
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    MakeMarkets,
    Running,
    StartSimulator,
    markets_config,
)

START = datetime(2025, 7, 1, tzinfo=UTC)


@pytest.fixture
async def sim(start_simulator: StartSimulator) -> Running:
    """137 orders over 10 days from 2025-07-01 (KST dates)."""
    return await start_simulator(coupang_app(orders=137, start=START, days=10))


@pytest.fixture
async def markets(sim: Running, make_markets: MakeMarkets) -> Markets:
    config = markets_config(coupang=sim.url, extra={"coupang": {"groups": {"vendor": {"rps": 10}}}})
    return await make_markets(config)


def job(kind: str, **payload: object) -> JobRequest:
    return JobRequest(kind, "coupang", COUPANG_VENDOR, dict(payload))


@pytest.mark.slow
async def test_collect_orders_follows_every_page_exactly_once(
    sim: Running, markets: Markets
) -> None:
    """Pages of 7 via nextToken, every status by default: every order of the window once
    (the old default of ACCEPT alone missed the INSTRUCT ones)."""
    request = job("collect_orders", since="2025-06-30", until="2025-07-12", max_per_page=7)
    result = await markets.run(request, Lane.MEDIUM)
    ids = [order["shipmentBoxId"] for order in result.data["orders"]]
    assert sorted(ids) == [600_000_000 + i for i in range(137)]
    assert len(ids) == len(set(ids)) == result.data["count"]
    accepted, instructed = 137 - 28, 28  # the simulator's ACCEPT and INSTRUCT orders
    pages = -(-accepted // 7) + -(-instructed // 7) + 4  # 4 statuses with no order: 1 page
    assert result.data["pages"] == result.calls == pages
    assert sim.state.served["orders"] == result.calls


async def test_collect_orders_keeps_to_its_dates(markets: Markets) -> None:
    """Only orders created within the window's days are collected."""
    request = job("collect_orders", since="2025-07-03", until="2025-07-03", statuses=["INSTRUCT"])
    result = await markets.run(request, Lane.MEDIUM)
    assert result.data["count"] > 0
    assert {order["orderedAt"][:10] for order in result.data["orders"]} == {"2025-07-03"}
    assert {order["status"] for order in result.data["orders"]} == {"INSTRUCT"}


async def test_collect_order_by_box_and_by_order_id(markets: Markets) -> None:
    """One order by shipmentBoxId, or the sheets of an orderId."""
    by_box = await markets.run(job("collect_order", shipment_box_id=600_000_003), Lane.LOW)
    assert by_box.data["order"]["orderId"] == 25_000_000_003
    by_order = await markets.run(job("collect_order", order_id=25_000_000_003), Lane.LOW)
    assert by_order.data["order"][0]["shipmentBoxId"] == 600_000_003


async def test_ship_order_uploads_the_invoice(markets: Markets) -> None:
    """An invoice upload marks the box shipped; sending it again (a retry whose first answer
    was lost) is still success; another invoice for the box fails permanently."""
    invoice = {
        "shipment_box_id": 600_000_001,
        "order_id": 25_000_000_001,
        "vendor_item_id": 70_000_001,
        "delivery_company_code": "CJGLS",
        "invoice_number": "123456789012",
    }
    request = job("ship_order", invoices=[invoice])
    assert markets.is_side_effect(request)
    result = await markets.run(request, Lane.HIGH)
    assert result.data == {"shipped": ["600000001"]}
    collected = await markets.run(job("collect_order", shipment_box_id=600_000_001), Lane.LOW)
    assert collected.data["order"]["status"] == "DEPARTURE"
    again = await markets.run(request, Lane.HIGH)
    assert again.data["shipped"] == ["600000001"]
    other = job("ship_order", invoices=[{**invoice, "invoice_number": "999"}])
    with pytest.raises(PartialFailure, match="600000001: FAIL: already shipped"):
        await markets.run(other, Lane.HIGH)


async def test_answer_inquiry(markets: Markets) -> None:
    """A reply needs content and replyBy; the simulator records it."""
    request = job(
        "answer_inquiry", inquiry_id=3_000_002, content="내일 발송됩니다.", reply_by="wing-user"
    )
    result = await markets.run(request, Lane.HIGH)
    assert result.data["inquiry_id"] == 3_000_002
    assert result.calls == 1


async def test_get_and_update_product(markets: Markets) -> None:
    """Price and stock of a vendor item change with one call each."""
    update = job("update_product", vendor_item_id=70_000_002, price=15_900, quantity=7)
    result = await markets.run(update, Lane.LOW)
    assert result.calls == 2
    product = await markets.run(job("get_product", seller_product_id=1_000_002), Lane.LOW)
    item = product.data["product"]["items"][0]
    assert (item["salePrice"], item["maximumBuyCount"]) == (15_900, 7)


async def test_generic_call_on_a_catalogue_endpoint(markets: Markets) -> None:
    """`call` reaches any catalogue endpoint; {vendorId} is the seller."""
    since = (START + timedelta(days=1)).date().isoformat()
    request = job(
        "call",
        endpoint="inquiries",
        params={"inquiryStartAt": since, "inquiryEndAt": since, "answeredType": "ALL"},
    )
    result = await markets.run(request, Lane.LOW)
    assert result.data["data"]["pagination"]["totalElements"] == 8


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"since": "2025-07-02", "until": "2025-07-01"}, "until is before since"),
        ({"until": "2025-07-02"}, "until needs since"),
        ({"since": "2025-07-01", "statuses": ["SHIPPED"]}, "statuses.0"),
        ({"since": "yesterday", "until": "2025-07-01"}, "since"),
        ({"since": "2025-07-01", "until": "2025-07-01", "pages": 3}, "pages: Extra inputs"),
    ],
)
async def test_invalid_payloads_are_permanent(
    markets: Markets, payload: dict[str, object], message: str
) -> None:
    """A payload that does not fit the kind is a one-line PermanentError, checked without I/O."""
    request = job("collect_orders", **payload)
    with pytest.raises(PermanentError, match=message) as raised:
        markets.check(request)
    assert "\n" not in str(raised.value)
