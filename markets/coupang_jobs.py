"""The job kinds for Coupang (catalogue "coupang"); the seller is the vendorId."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import Field, model_validator

from markets.answers import expect_dict, expect_list
from markets.errors import PermanentError
from markets.jobs import JobContext, JobSpec, Payload

__all__ = ["COUPANG_JOBS"]

OrderStatus = Literal[
    "ACCEPT", "INSTRUCT", "DEPARTURE", "DELIVERING", "FINAL_DELIVERY", "NONE_TRACKING"
]


class CollectOrders(Payload):
    """Every order sheet created from `since` to `until` (days) in `status`, all pages."""

    since: date
    until: date
    status: OrderStatus = "ACCEPT"
    max_per_page: int = Field(default=50, ge=1, le=50)

    @model_validator(mode="after")
    def _ordered(self) -> CollectOrders:
        if self.until < self.since:
            raise ValueError("until is before since")
        return self


async def collect_orders(context: JobContext, payload: CollectOrders) -> dict[str, Any]:
    market = context.client.name
    orders: dict[Any, Any] = {}
    tokens: set[str] = set()
    pages = 0
    token: str | None = None
    while True:
        params: dict[str, Any] = {
            "createdAtFrom": payload.since.isoformat(),
            "createdAtTo": payload.until.isoformat(),
            "maxPerPage": payload.max_per_page,
            "status": payload.status,
            "nextToken": token,
        }
        answer = await context.call("orders", params=params)
        pages += 1
        for order in expect_list(answer, market, "orders", "data"):
            orders[order.get("shipmentBoxId")] = order
        token = expect_dict(answer, market, "orders").get("nextToken") or None
        if token is None:
            break
        if token in tokens:
            raise PermanentError(
                "the market repeated a nextToken", market=market, endpoint="orders"
            )
        tokens.add(token)
    return {"orders": list(orders.values()), "count": len(orders), "pages": pages}


class CollectOrder(Payload):
    """One order by `shipment_box_id`, or every sheet of `order_id`."""

    shipment_box_id: int | None = None
    order_id: int | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CollectOrder:
        if (self.shipment_box_id is None) == (self.order_id is None):
            raise ValueError("give exactly one of shipment_box_id and order_id")
        return self


async def collect_order(context: JobContext, payload: CollectOrder) -> dict[str, Any]:
    if payload.shipment_box_id is not None:
        answer = await context.call("order", path={"shipmentBoxId": payload.shipment_box_id})
    else:
        answer = await context.call("order_by_order_id", path={"orderId": payload.order_id})
    return {"order": expect_dict(answer, context.client.name, "order").get("data")}


class Invoice(Payload):
    shipment_box_id: int
    order_id: int
    vendor_item_id: int
    delivery_company_code: str = Field(min_length=1)  # CJGLS, HANJIN, EPOST, ...
    invoice_number: str = Field(min_length=1)
    split_shipping: bool = False
    pre_split_shipped: bool = False
    estimated_shipping_date: str = ""


class ShipOrder(Payload):
    """Upload invoices (tracking numbers) for up to 50 shipment boxes."""

    invoices: list[Invoice] = Field(min_length=1, max_length=50)


async def ship_order(context: JobContext, payload: ShipOrder) -> dict[str, Any]:
    market = context.client.name
    body = {
        "vendorId": context.seller,
        "orderSheetInvoiceApplyDtos": [
            {
                "shipmentBoxId": invoice.shipment_box_id,
                "orderId": invoice.order_id,
                "vendorItemId": invoice.vendor_item_id,
                "deliveryCompanyCode": invoice.delivery_company_code,
                "invoiceNumber": invoice.invoice_number,
                "splitShipping": invoice.split_shipping,
                "preSplitShipped": invoice.pre_split_shipped,
                "estimatedShippingDate": invoice.estimated_shipping_date,
            }
            for invoice in payload.invoices
        ],
    }
    answer = await context.call("invoices", json=body)
    data = expect_dict(answer, market, "invoices", "data")
    invoices = {invoice.shipment_box_id: invoice for invoice in payload.invoices}
    shipped: list[Any] = []
    failed: list[Any] = []
    for item in expect_list(data, market, "invoices", "responseList"):
        box = item.get("shipmentBoxId")
        if item.get("succeed") or await _already_shipped(context, invoices.get(box)):
            shipped.append(box)
        else:
            failed.append(item)
    if failed and not shipped:
        raise PermanentError(
            f"invoice upload failed: {failed[0].get('resultMessage')}",
            market=market,
            endpoint="invoices",
            code=str(failed[0].get("resultCode")),
        )
    return {"response_code": data.get("responseCode"), "shipped": shipped, "failed": failed}


async def _already_shipped(context: JobContext, invoice: Invoice | None) -> bool:
    """Did an earlier attempt (whose answer was lost) upload this very invoice?"""
    if invoice is None:
        return False
    answer = await context.call("order", path={"shipmentBoxId": invoice.shipment_box_id})
    order = answer.get("data") if isinstance(answer, dict) else None
    return isinstance(order, dict) and order.get("invoiceNumber") == invoice.invoice_number


class AnswerInquiry(Payload):
    """Reply to a customer inquiry; `reply_by` is the WING user id that answers."""

    inquiry_id: int
    content: str = Field(min_length=1)
    reply_by: str = Field(min_length=1)


async def answer_inquiry(context: JobContext, payload: AnswerInquiry) -> dict[str, Any]:
    body = {"content": payload.content, "vendorId": context.seller, "replyBy": payload.reply_by}
    answer = await context.call("inquiry_reply", path={"inquiryId": payload.inquiry_id}, json=body)
    return {"inquiry_id": payload.inquiry_id, "answer": answer}


class GetProduct(Payload):
    seller_product_id: int


async def get_product(context: JobContext, payload: GetProduct) -> dict[str, Any]:
    answer = await context.call("product", path={"sellerProductId": payload.seller_product_id})
    return {"product": expect_dict(answer, context.client.name, "product").get("data")}


class UpdateProduct(Payload):
    """Set the price and/or the stock of one vendor item."""

    vendor_item_id: int
    price: int | None = Field(default=None, gt=0)
    quantity: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _something(self) -> UpdateProduct:
        if self.price is None and self.quantity is None:
            raise ValueError("give price, quantity or both")
        return self


async def update_product(context: JobContext, payload: UpdateProduct) -> dict[str, Any]:
    item = {"vendorItemId": payload.vendor_item_id}
    if payload.price is not None:
        await context.call("price", path={**item, "price": payload.price})
    if payload.quantity is not None:
        await context.call("stock", path={**item, "quantity": payload.quantity})
    return {
        "vendor_item_id": payload.vendor_item_id,
        "price": payload.price,
        "quantity": payload.quantity,
    }


COUPANG_JOBS: dict[str, JobSpec] = {
    "collect_orders": JobSpec(CollectOrders, collect_orders, ("orders",), side_effect=False),
    "collect_order": JobSpec(
        CollectOrder, collect_order, ("order", "order_by_order_id"), side_effect=False
    ),
    "ship_order": JobSpec(ShipOrder, ship_order, ("invoices", "order"), side_effect=True),
    "answer_inquiry": JobSpec(AnswerInquiry, answer_inquiry, ("inquiry_reply",), side_effect=True),
    "get_product": JobSpec(GetProduct, get_product, ("product",), side_effect=False),
    "update_product": JobSpec(UpdateProduct, update_product, ("price", "stock"), side_effect=True),
}
