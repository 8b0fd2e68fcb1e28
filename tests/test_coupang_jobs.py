"""The Coupang job kinds against the Coupang simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lanes import Lane
from markets import Markets, PermanentError
from markets.coupang.simulator import coupang_app
from markets.errors import PartialFailure
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    MakeMarkets,
    Running,
    StartSimulator,
    markets_config,
)
from tests.fixtures_markets import (
    coupang_job as job,
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
    assert markets.check(request).side_effect
    await markets.run(job("acknowledge_orders", shipment_box_ids=[600_000_001]), Lane.HIGH)
    result = await markets.run(request, Lane.HIGH)
    assert result.data == {"shipped": ["600000001/70000001"]}
    collected = await markets.run(job("collect_order", shipment_box_id=600_000_001), Lane.LOW)
    assert collected.data["order"]["status"] == "DEPARTURE"
    again = await markets.run(request, Lane.HIGH)
    assert again.data["shipped"] == ["600000001/70000001"]
    other = job("ship_order", invoices=[{**invoice, "invoice_number": "999"}])
    with pytest.raises(PartialFailure, match="600000001/70000001: FAIL: already shipped"):
        await markets.run(other, Lane.HIGH)


def bundle_invoices(number: str = "BUNDLE-1") -> list[dict[str, object]]:
    """Box 600000005 holds three vendor items (a bundle): one invoice per item."""
    return [
        {
            "shipment_box_id": 600_000_005,
            "order_id": 25_000_000_005,
            "vendor_item_id": 70_000_005 + extra,
            "delivery_company_code": "CJGLS",
            "invoice_number": number,
        }
        for extra in range(3)
    ]


async def test_a_bundle_of_three_items_in_one_box_ships_all_three(
    markets: Markets, sim: Running
) -> None:
    """Issue 18: three invoices under one box are three request items (the old batch keyed
    by box sent one, the last); each item shipped once; the box is then on its way."""
    result = await markets.run(job("ship_order", invoices=bundle_invoices()), Lane.HIGH)
    shipped = [f"600000005/{70_000_005 + extra}" for extra in range(3)]
    assert sorted(result.data["shipped"]) == shipped
    assert dict(sim.state.items_posted) == {item: 1 for item in shipped}
    assert {sim.state.effects[f"invoice:{item}"] for item in shipped} == {1}
    order = await markets.run(job("collect_order", shipment_box_id=600_000_005), Lane.LOW)
    assert order.data["order"]["status"] == "DEPARTURE"
    assert {item["invoiceNumber"] for item in order.data["order"]["orderItems"]} == {"BUNDLE-1"}


async def test_the_simulator_refuses_a_box_missing_an_item(markets: Markets) -> None:
    """Two of the bundle's three items: the market refuses the box, naming each item."""
    request = job("ship_order", invoices=bundle_invoices()[:2])
    with pytest.raises(PartialFailure, match="needs its invoice") as raised:
        await markets.run(request, Lane.HIGH)
    assert sorted(raised.value.failed) == ["600000005/70000005", "600000005/70000006"]


async def test_two_invoices_for_one_item_are_a_bad_payload(markets: Markets) -> None:
    twice = bundle_invoices()[:1] * 2
    with pytest.raises(PermanentError, match="600000005/70000005"):
        await markets.run(job("ship_order", invoices=twice), Lane.HIGH)


async def test_a_duplicate_invoice_number_is_permanent_despite_retry_required(
    markets: Markets, sim: Running
) -> None:
    """The market answers DUPLICATE_INVOICE_NUMBER with retryRequired=true: a retry fails
    the same way, so it is refused at once, naming the item (not retried forever)."""
    await markets.run(job("ship_order", invoices=bundle_invoices("SAME")), Lane.HIGH)
    other = {
        "shipment_box_id": 600_000_000,
        "order_id": 25_000_000_000,
        "vendor_item_id": 70_000_000,
        "delivery_company_code": "CJGLS",
        "invoice_number": "SAME",
    }
    with pytest.raises(PartialFailure, match="DUPLICATE_INVOICE_NUMBER") as raised:
        await markets.run(job("ship_order", invoices=[other]), Lane.HIGH)
    assert list(raised.value.failed) == ["600000000/70000000"]
    assert sim.state.items_posted["600000000/70000000"] == 1


async def test_acknowledge_then_invoice_succeeds_and_invoice_first_is_refused(
    markets: Markets, sim: Running
) -> None:
    """Issue 18: box 600000001 is ACCEPT (not acknowledged): its invoice is refused by the
    simulator; acknowledged, the same invoice ships."""
    invoice = {
        "shipment_box_id": 600_000_001,
        "order_id": 25_000_000_001,
        "vendor_item_id": 70_000_001,
        "delivery_company_code": "CJGLS",
        "invoice_number": "ACK-1",
    }
    with pytest.raises(PartialFailure, match="not acknowledged"):
        await markets.run(job("ship_order", invoices=[invoice]), Lane.HIGH)
    acknowledged = await markets.run(
        job("acknowledge_orders", shipment_box_ids=[600_000_001]), Lane.HIGH
    )
    assert acknowledged.data == {"acknowledged": ["600000001"]}
    assert sim.state.effects["acknowledge:600000001"] == 1
    shipped = await markets.run(job("ship_order", invoices=[invoice]), Lane.HIGH)
    assert shipped.data == {"shipped": ["600000001/70000001"]}


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
    """`call` reaches any catalogue endpoint; {vendorId} is the seller (the query's own
    vendorId, which the market requires, is the caller's)."""
    since = (START + timedelta(days=1)).date().isoformat()
    params = {"inquiryStartAt": since, "inquiryEndAt": since, "answeredType": "ALL"}
    refused = job("call", endpoint="inquiries", params=params)
    with pytest.raises(PermanentError, match="vendorId is required"):
        await markets.run(refused, Lane.LOW)
    request = job("call", endpoint="inquiries", params={**params, "vendorId": COUPANG_VENDOR})
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


async def test_return_actions_stop_a_shipment_and_approve_a_return(
    markets: Markets, sim: Running
) -> None:
    """A return asked while the order was prepared (RU): stop its shipment. A received
    return (UC): confirm the goods arrived, then approve it. Each carried out once."""
    stop = job("act_on_claim", receipt_id=40_000_001, action="stop_shipment", cancel_count=1)
    stopped = await markets.run(stop, Lane.HIGH)
    assert stopped.data["action"] == "stop_shipment"
    confirm = job("act_on_claim", receipt_id=40_000_003, action="confirm_receipt")
    await markets.run(confirm, Lane.HIGH)
    approve = job("act_on_claim", receipt_id=40_000_003, action="approve_return", cancel_count=1)
    await markets.run(approve, Lane.HIGH)
    assert sim.state.effects["return:40000001:RETURNS_COMPLETED"] == 1
    assert sim.state.effects["return:40000003:VENDOR_WAREHOUSE_CONFIRM"] == 1
    assert sim.state.effects["return:40000003:RETURNS_COMPLETED"] == 1
    with pytest.raises(PermanentError, match="needs cancel_count"):
        markets.check(job("act_on_claim", receipt_id=40_000_003, action="approve_return"))


async def test_call_center_inquiries_are_collected_and_answered_within_24_hours(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Call-center inquiries (vendorId in the query, 7-day queries); a reply within 24 hours
    of the inquiry lands once; past 24 hours (the simulator's clock) the market refuses it."""
    now = datetime.now(UTC)
    running = await start_simulator(coupang_app(start=now - timedelta(hours=3), days=1))
    config = markets_config(
        coupang=running.url, extra={"coupang": {"groups": {"vendor": {"rps": 10}}}}
    )
    markets = await make_markets(config)
    since, until = (now - timedelta(days=1)).date(), (now + timedelta(days=6)).date()
    collected = await markets.run(
        job("collect_call_center_inquiries", since=since.isoformat(), until=until.isoformat()),
        Lane.MEDIUM,
    )
    assert collected.data["count"] == 20
    reply = {"content": "확인했습니다.", "reply_by": "wing-user", "parent_answer_id": 1}
    await markets.run(job("answer_call_center_inquiry", inquiry_id=5_000_000, **reply), Lane.HIGH)
    assert running.state.effects["call_center_reply:5000000"] == 1
    running.state.advance(30 * 3600)
    late = job("answer_call_center_inquiry", inquiry_id=5_000_001, **reply)
    with pytest.raises(PermanentError, match="24-hour"):
        await markets.run(late, Lane.HIGH)
