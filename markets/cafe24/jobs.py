"""The job kinds for Cafe24 (catalogue "cafe24"); every call is the mall's (the seller's).

Orders are searched by `start_date`/`end_date` (`YYYY-MM-DDTHH:MM:SS+09:00`, both ends
included) at most `ORDERS.max_span` apart, paged by `offset`/`limit` up to a maximum
offset: a window holding more orders than one query can page through is halved until it
fits (its size read from `orders/count` first).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import Field

from markets.answers import expect_dict, expect_list
from markets.client import Call
from markets.errors import PermanentError
from markets.jobs import NOT_LANDED, JobContext, JobSpec, Landed, Payload, Window
from markets.market import OrderShape
from markets.paging import mark_collected, settled_now, since_last, windows

__all__ = ["CAFE24_JOBS", "KST", "MAX_OFFSET", "ORDERS", "PAGE_LIMIT", "cafe24_time"]

PAGE_LIMIT = 1000  # orders per page, Cafe24's largest `limit`
MAX_OFFSET = 15000  # Cafe24's largest `offset` for orders [?]
KST = timezone(timedelta(hours=9))  # the market's own time

ORDERS = OrderShape(
    # Cafe24 refuses a search longer than this; the published maximum is not certain, so
    # a cautious month. [?]
    max_span=timedelta(days=30),
    whole_days=False,
    order_key="order_id",
    id_field="order_id",
    statuses=(),  # every status
    # An order is searchable within seconds of being placed: a short settle.
    settle=timedelta(minutes=1),
    overlap=timedelta(minutes=10),
    catch_up=timedelta(days=30),
    first_lookback=timedelta(days=1),
)
_SECOND = timedelta(seconds=1)


def cafe24_time(moment: datetime) -> str:
    """Cafe24's format: `2026-12-04T17:20:00+09:00` (seconds, Korea time)."""
    return moment.astimezone(KST).isoformat(timespec="seconds")


def _to_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class CollectOrders(Window):
    """Every order (every status, with its items) from `since` to before `until` (default:
    the settled now), each once. Without `since`: since the mall's last collection (its
    watermark, minus the overlap), and the watermark moves once the result is delivered."""

    limit: int = Field(default=PAGE_LIMIT, ge=1, le=PAGE_LIMIT)


def _search(context: JobContext, low: datetime, high: datetime) -> dict[str, Any]:
    """The query of the window [low, high): Cafe24's end is inclusive, to the second."""
    return {
        "start_date": cafe24_time(low),
        "end_date": cafe24_time(high - _SECOND),
        "date_type": context.client.config.options.get("date_type", "order_date"),
    }


async def _window(
    context: JobContext, low: datetime, high: datetime, limit: int, found: dict[str, Any]
) -> None:
    """Every order of [low, high) into `found` by order id; a window too big to page is
    halved."""
    market = context.client.name
    search = _search(context, low, high)
    counted = expect_dict(await context.call("orders_count", params=search), market, "orders_count")
    total = int(counted.get("count", 0))
    if total and (total - 1) // limit * limit > MAX_OFFSET:  # its last page's offset
        if high - low <= 2 * _SECOND:
            raise PermanentError(
                f"{total} orders in two seconds from {search['start_date']}: "
                "Cafe24 cannot page through them",
                market=market,
                endpoint="orders",
            )
        middle = _to_seconds(low + (high - low) / 2)
        await _window(context, low, middle, limit, found)
        await _window(context, middle, high, limit, found)
        return
    offset = 0
    while offset < total:
        params = {**search, "embed": "items", "limit": limit, "offset": offset}
        answer = await context.call("orders", params=params)
        page = expect_list(answer, market, "orders", "orders")
        for order in page:
            if isinstance(order, dict):
                found[str(order.get(ORDERS.order_key))] = order
        if len(page) < limit:
            return
        offset += limit


async def collect_orders(context: JobContext, payload: CollectOrders) -> dict[str, Any]:
    if payload.since is None:
        since, until = await since_last(context, "orders", ORDERS)
        incremental = True
    else:
        since, until = payload.since, payload.until or settled_now(context, ORDERS)
        incremental = False
    start, end = _to_seconds(since), _to_seconds(until)
    found: dict[str, Any] = {}
    for low, high in windows(start, end, ORDERS.max_span):
        await _window(context, low, high, payload.limit, found)
    if incremental:
        mark_collected(context, "orders", end)
    return {"orders": list(found.values()), "count": len(found)}


class CollectOrder(Payload):
    """One order with its items."""

    order_id: str = Field(min_length=1)


async def collect_order(context: JobContext, payload: CollectOrder) -> dict[str, Any]:
    answer = await context.call(
        "order", path={"order_id": payload.order_id}, params={"embed": "items"}
    )
    return {"order": expect_dict(answer, context.client.name, "order", "order")}


class Shipment(Payload):
    """One shipment: the order items it carries, its carrier and tracking number."""

    order_item_codes: list[str] = Field(min_length=1, max_length=100)
    tracking_no: str = Field(min_length=1)
    shipping_company_code: str = Field(min_length=1)  # Cafe24's carrier code ("0019", ...)
    status: Literal["standby", "shipping"] = "shipping"


class ShipOrder(Payload):
    """Register the shipments of one order (each once: one that may have landed is looked
    for before it is sent again)."""

    order_id: str = Field(min_length=1)
    shipments: list[Shipment] = Field(min_length=1, max_length=20)


async def ship_order(context: JobContext, payload: ShipOrder) -> dict[str, Any]:
    market = context.client.name
    path = {"order_id": payload.order_id}

    def registered(shipment: Shipment) -> Landed:
        return lambda: _registered(shipment)

    async def _registered(shipment: Shipment) -> Any:
        answer = await context.call("order_shipments", path=path)
        for found in expect_list(answer, market, "order_shipments", "shipments"):
            if (
                isinstance(found, dict)
                and found.get("tracking_no") == shipment.tracking_no
                and set(shipment.order_item_codes) <= set(found.get("order_item_code") or [])
            ):
                return {"shipment": found, "already_done": True}
        return NOT_LANDED

    done = []
    for shipment in payload.shipments:
        body = {
            "request": {
                "tracking_no": shipment.tracking_no,
                "shipping_company_code": shipment.shipping_company_code,
                "order_item_code": shipment.order_item_codes,
                "status": shipment.status,
            }
        }
        request = Call("shipments", path=path, json=body)
        done.append(await context.effect(request, landed=registered(shipment)))
    return {"order_id": payload.order_id, "shipments": done}


class GetProduct(Payload):
    """One product, with its variants (each variant's stock) unless `variants` is false."""

    product_no: int = Field(gt=0)
    variants: bool = True


async def get_product(context: JobContext, payload: GetProduct) -> dict[str, Any]:
    market = context.client.name
    path = {"product_no": payload.product_no}
    product = expect_dict(await context.call("product", path=path), market, "product", "product")
    result: dict[str, Any] = {"product": product}
    if payload.variants:
        answer = await context.call("variants", path=path)
        result["variants"] = expect_list(answer, market, "variants", "variants")
    return result


class UpdateProduct(Payload):
    """Set the stock of one variant of a product (a PUT: sending it again changes nothing)."""

    product_no: int = Field(gt=0)
    variant_code: str = Field(min_length=1)
    stock: int = Field(ge=0)


async def update_product(context: JobContext, payload: UpdateProduct) -> dict[str, Any]:
    answer = await context.call(
        "inventory",
        path={"product_no": payload.product_no, "variant_code": payload.variant_code},
        json={"request": {"quantity": payload.stock}},
    )
    inventory = expect_dict(answer, context.client.name, "inventory", "inventory")
    return {
        "product_no": payload.product_no,
        "variant_code": payload.variant_code,
        "stock": inventory.get("quantity"),
    }


class AnswerInquiry(Payload):
    """Answer an inquiry posted on one of the mall's boards (its Q&A board) with a comment
    on the post: Cafe24's way to answer a board inquiry through the API (each once: one
    that may have landed is looked for among the post's comments first). `writer` is the
    name shown beside the answer (Cafe24 requires one [?])."""

    board_no: int = Field(gt=0)
    article_no: int = Field(gt=0)
    content: str = Field(min_length=1, max_length=5000)
    writer: str = Field(default="admin", min_length=1, max_length=100)


async def answer_inquiry(context: JobContext, payload: AnswerInquiry) -> dict[str, Any]:
    market = context.client.name
    path = {"board_no": payload.board_no, "article_no": payload.article_no}

    async def answered() -> Any:
        answer = await context.call("comments", path=path)
        for found in expect_list(answer, market, "comments", "comments"):
            if isinstance(found, dict) and found.get("content") == payload.content:
                return {"comment": found, "already_done": True}
        return NOT_LANDED

    body = {"request": {"content": payload.content, "writer": payload.writer}}
    done = await context.effect(Call("add_comment", path=path, json=body), landed=answered)
    return {"board_no": payload.board_no, "article_no": payload.article_no, "answer": done}


CAFE24_JOBS: dict[str, JobSpec] = {
    "collect_orders": JobSpec(
        CollectOrders, collect_orders, ("orders_count", "orders"), side_effect=False
    ),
    "collect_order": JobSpec(CollectOrder, collect_order, ("order",), side_effect=False),
    "ship_order": JobSpec(
        ShipOrder, ship_order, ("shipments", "order_shipments"), side_effect=True
    ),
    "get_product": JobSpec(GetProduct, get_product, ("product", "variants"), side_effect=False),
    "update_product": JobSpec(UpdateProduct, update_product, ("inventory",), side_effect=True),
    "answer_inquiry": JobSpec(
        AnswerInquiry, answer_inquiry, ("add_comment", "comments"), side_effect=True
    ),
}
