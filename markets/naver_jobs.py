"""The job kinds for Naver Commerce (catalogue "naver")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from markets.answers import expect_dict, expect_list
from markets.errors import PermanentError
from markets.jobs import JobContext, JobSpec, Payload

__all__ = ["KST", "NAVER_JOBS", "naver_time"]

KST = timezone(timedelta(hours=9))
# last-changed-statuses answers for at most 24 hours from lastChangedFrom.
_MAX_SPAN = timedelta(hours=24)
_DETAILS_PER_CALL = 300


def naver_time(moment: datetime) -> str:
    """Naver's time format: `2022-04-11T15:21:44.000+09:00`."""
    return moment.astimezone(KST).isoformat(timespec="milliseconds")


def _to_millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class CollectOrders(Payload):
    """Every product order changed from `since` to `until` (default now), with its details."""

    since: AwareDatetime
    until: AwareDatetime | None = None
    limit_count: int = Field(default=300, ge=1, le=300)
    details: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> CollectOrders:
        if self.until is not None and self.until <= self.since:
            raise ValueError("until is not after since")
        return self


async def _details(context: JobContext, ids: list[str]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(ids), _DETAILS_PER_CALL):
        chunk = ids[start : start + _DETAILS_PER_CALL]
        answer = await context.call("order_details", json={"productOrderIds": chunk})
        found.extend(expect_list(answer, context.client.name, "order_details", "data"))
    return found


async def _changed(context: JobContext, start: datetime, end: datetime, limit: int) -> list[Any]:
    """Every status change in [start, end) (at most 24 hours), following `more` pages."""
    market = context.client.name
    changes: list[Any] = []
    cursor: tuple[str, str | None] = (naver_time(start), None)
    seen: set[tuple[str, str | None]] = set()
    while True:
        params = {
            "lastChangedFrom": cursor[0],
            "lastChangedTo": naver_time(end),
            "limitCount": limit,
            "moreSequence": cursor[1],
        }
        answer = await context.call("changed_orders", params=params)
        data = expect_dict(answer, market, "changed_orders", "data")
        changes.extend(expect_list(data, market, "changed_orders", "lastChangeStatuses"))
        more = data.get("more")
        if not isinstance(more, dict) or not more.get("moreFrom"):
            return changes
        seen.add(cursor)
        cursor = (str(more["moreFrom"]), str(more.get("moreSequence") or "") or None)
        if cursor in seen:
            raise PermanentError(
                "the market repeated a page", market=market, endpoint="changed_orders"
            )


async def collect_orders(context: JobContext, payload: CollectOrders) -> dict[str, Any]:
    # Naver's times are in milliseconds: cut ours to match, so no span is empty once sent.
    until = _to_millis(payload.until or datetime.now(UTC))
    statuses: dict[Any, Any] = {}
    start = _to_millis(payload.since)
    while start < until:
        end = min(start + _MAX_SPAN, until)
        for change in await _changed(context, start, end, payload.limit_count):
            statuses[change.get("productOrderId")] = change
        start = end
    result: dict[str, Any] = {"statuses": list(statuses.values()), "count": len(statuses)}
    if payload.details and statuses:
        result["orders"] = await _details(context, [str(key) for key in statuses])
    return result


class CollectOrder(Payload):
    """The product orders of `order_id`, or the given `product_order_ids`, with details."""

    order_id: str | None = Field(default=None, min_length=1)
    product_order_ids: list[str] | None = Field(default=None, min_length=1, max_length=300)

    @model_validator(mode="after")
    def _exactly_one(self) -> CollectOrder:
        if (self.order_id is None) == (self.product_order_ids is None):
            raise ValueError("give exactly one of order_id and product_order_ids")
        return self


async def collect_order(context: JobContext, payload: CollectOrder) -> dict[str, Any]:
    ids = payload.product_order_ids
    if ids is None:
        answer = await context.call("order_product_ids", path={"orderId": payload.order_id})
        ids = [
            str(each)
            for each in expect_list(answer, context.client.name, "order_product_ids", "data")
        ]
    return {"orders": await _details(context, ids) if ids else []}


class Dispatch(Payload):
    product_order_id: str = Field(min_length=1)
    delivery_company_code: str = Field(min_length=1)  # CJGLS, HANJIN, EPOST, ...
    tracking_number: str = Field(min_length=1)
    dispatch_date: AwareDatetime | None = None  # now when absent
    delivery_method: Literal["DELIVERY", "DIRECT_DELIVERY", "VISIT_RECEIPT", "NOTHING"] = "DELIVERY"


class ShipOrder(Payload):
    """Dispatch up to 30 product orders."""

    dispatches: list[Dispatch] = Field(min_length=1, max_length=30)


async def ship_order(context: JobContext, payload: ShipOrder) -> dict[str, Any]:
    market = context.client.name
    now = datetime.now(UTC)
    body = {
        "dispatchProductOrders": [
            {
                "productOrderId": item.product_order_id,
                "deliveryMethod": item.delivery_method,
                "deliveryCompanyCode": item.delivery_company_code,
                "trackingNumber": item.tracking_number,
                "dispatchDate": naver_time(item.dispatch_date or now),
            }
            for item in payload.dispatches
        ]
    }
    answer = await context.call("dispatch", json=body)
    data = expect_dict(answer, market, "dispatch", "data")
    shipped = expect_list(data, market, "dispatch", "successProductOrderIds")
    failed = expect_list(data, market, "dispatch", "failProductOrderInfos")
    if failed:
        tracking = {item.product_order_id: item.tracking_number for item in payload.dispatches}
        done = await _already_dispatched(context, tracking, failed)
        shipped = [*shipped, *done]
        failed = [item for item in failed if item.get("productOrderId") not in done]
    if failed and not shipped:
        first = failed[0] if isinstance(failed[0], dict) else {}
        raise PermanentError(
            f"dispatch failed: {first.get('message', 'no reason given')}",
            market=market,
            endpoint="dispatch",
            code=first.get("code"),
        )
    return {"shipped": shipped, "failed": failed}


async def _already_dispatched(
    context: JobContext, tracking: dict[str, str], failed: list[Any]
) -> list[str]:
    """The failed ids that an earlier attempt (whose answer was lost) already dispatched
    with the same tracking number."""
    ids = [str(item.get("productOrderId")) for item in failed if isinstance(item, dict)]
    done = []
    for detail in await _details(context, ids):
        order = detail.get("productOrder") or {}
        delivery = detail.get("delivery") or {}
        number = str(order.get("productOrderId"))
        if delivery.get("trackingNumber") and delivery.get("trackingNumber") == tracking.get(
            number
        ):
            done.append(number)
    return done


class AnswerInquiry(Payload):
    """Answer a customer inquiry (`inquiry_no`) or a product Q&A question (`question_id`)."""

    inquiry_no: int | None = None
    question_id: int | None = None
    answer: str = Field(min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> AnswerInquiry:
        if (self.inquiry_no is None) == (self.question_id is None):
            raise ValueError("give exactly one of inquiry_no and question_id")
        return self


async def answer_inquiry(context: JobContext, payload: AnswerInquiry) -> dict[str, Any]:
    if payload.inquiry_no is not None:
        answer = await context.call(
            "inquiry_answer",
            path={"inquiryNo": payload.inquiry_no},
            json={"answerComment": payload.answer},
        )
    else:
        answer = await context.call(
            "qna_answer",
            path={"questionId": payload.question_id},
            json={"commentContent": payload.answer},
        )
    return {"answer": answer}


class GetProduct(Payload):
    origin_product_no: int | None = None
    channel_product_no: int | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GetProduct:
        if (self.origin_product_no is None) == (self.channel_product_no is None):
            raise ValueError("give exactly one of origin_product_no and channel_product_no")
        return self


async def get_product(context: JobContext, payload: GetProduct) -> dict[str, Any]:
    if payload.origin_product_no is not None:
        answer = await context.call(
            "origin_product", path={"originProductNo": payload.origin_product_no}
        )
    else:
        answer = await context.call(
            "channel_product", path={"channelProductNo": payload.channel_product_no}
        )
    return {"product": answer}


class UpdateProduct(Payload):
    """Set the sale price and/or the stock of an origin product (read, change, write back)."""

    origin_product_no: int
    price: int | None = Field(default=None, gt=0)
    stock: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _something(self) -> UpdateProduct:
        if self.price is None and self.stock is None:
            raise ValueError("give price, stock or both")
        return self


async def update_product(context: JobContext, payload: UpdateProduct) -> dict[str, Any]:
    market = context.client.name
    path = {"originProductNo": payload.origin_product_no}
    product = expect_dict(await context.call("origin_product", path=path), market, "origin_product")
    origin = dict(expect_dict(product, market, "origin_product", "originProduct"))
    if payload.price is not None:
        origin["salePrice"] = payload.price
    if payload.stock is not None:
        origin["stockQuantity"] = payload.stock
    await context.call(
        "origin_product_update", path=path, json={**product, "originProduct": origin}
    )
    return {
        "origin_product_no": payload.origin_product_no,
        "price": origin.get("salePrice"),
        "stock": origin.get("stockQuantity"),
    }


NAVER_JOBS: dict[str, JobSpec] = {
    "collect_orders": JobSpec(
        CollectOrders, collect_orders, ("changed_orders", "order_details"), side_effect=False
    ),
    "collect_order": JobSpec(
        CollectOrder, collect_order, ("order_product_ids", "order_details"), side_effect=False
    ),
    "ship_order": JobSpec(ShipOrder, ship_order, ("dispatch", "order_details"), side_effect=True),
    "answer_inquiry": JobSpec(
        AnswerInquiry, answer_inquiry, ("inquiry_answer", "qna_answer"), side_effect=True
    ),
    "get_product": JobSpec(
        GetProduct, get_product, ("origin_product", "channel_product"), side_effect=False
    ),
    "update_product": JobSpec(
        UpdateProduct,
        update_product,
        ("origin_product", "origin_product_update"),
        side_effect=True,
    ),
}
