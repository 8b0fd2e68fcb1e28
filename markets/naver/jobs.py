"""The job kinds for Naver Commerce (catalogue "naver")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, Field, model_validator

from markets.answers import expect_dict, expect_list
from markets.client import Call
from markets.effects import Batch, Verdict, run_batch
from markets.errors import OutcomeUnknown
from markets.jobs import NOT_LANDED, JobContext, JobSpec, Payload, Window
from markets.market import OrderShape
from markets.paging import (
    mark_collected,
    open_to_repoll,
    pages,
    settled_now,
    since_last,
    track_open,
    windows,
)

__all__ = ["KST", "NAVER_JOBS", "ORDERS", "naver_time"]

_DETAILS_PER_CALL = 300
FINAL_STATUSES = frozenset(
    {"PURCHASE_DECIDED", "EXCHANGED", "CANCELED", "RETURNED", "CANCELED_BY_NOPAYMENT"}
)
CLAIM_CHANGES = (
    "CLAIM_REQUESTED",
    "CLAIM_REJECTED",
    "CLAIM_HOLDBACK_RELEASED",
    "COLLECT_DONE",
    "CLAIM_COMPLETED",
)
KST = timezone(timedelta(hours=9))  # the market's own time

ORDERS = OrderShape(
    # last-changed-statuses answers for at most 24 hours from lastChangedFrom.
    max_span=timedelta(hours=24),
    whole_days=False,
    order_key="productOrderId",
    id_field="order_id",
    # Every change is read; `statuses` narrows the result, none means all.
    statuses=(),
    # The change index lags its writes: a window stops a minute behind now.
    settle=timedelta(minutes=1),
    # An order that changed while its window was paged is read again next time.
    overlap=timedelta(minutes=10),
    # Seven 24-hour queries at most per run; a first run reads the last day.
    catch_up=timedelta(days=7),
    first_lookback=timedelta(days=1),
)
# Failed dispatch items worth posting again (not published: the gateway's transient ones). [?]
_RETRYABLE_DISPATCH = frozenset({"SYSTEM_ERROR", "TEMPORARY_ERROR", "GW.TIMEOUT"})
# How far back an inquiry is looked for when checking an answer that may have landed.
_INQUIRY_LOOKBACK = timedelta(days=90)


def _failed(data: Any, market: str, endpoint: str) -> list[tuple[str, Verdict, str]]:
    """The verdicts of a batch answer's `failProductOrderInfos` (confirm and dispatch answer
    failures alike): retried when their code says so, refused otherwise."""
    verdicts = []
    for item in expect_list(data, market, endpoint, "failProductOrderInfos"):
        item = item if isinstance(item, dict) else {}
        code = str(item.get("code"))
        verdict = Verdict.RETRY if code in _RETRYABLE_DISPATCH else Verdict.REFUSED
        verdicts.append(
            (str(item.get("productOrderId")), verdict, f"{code}: {item.get('message')}")
        )
    return verdicts


_MILLISECOND = timedelta(milliseconds=1)


def naver_time(moment: datetime) -> str:
    """Naver's time format: `2022-04-11T15:21:44.000+09:00`."""
    return moment.astimezone(KST).isoformat(timespec="milliseconds")


def _to_millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class CollectOrders(Window):
    """Every product order changed from `since` to before `until` (default: the settled
    now; `until` is the next window's), each once, with its details. Without `since`: since
    the seller's last collection (its watermark, minus the overlap). `statuses` keeps only
    those product order statuses."""

    statuses: tuple[str, ...] = ()
    limit_count: int = Field(default=300, ge=1, le=300)
    details: bool = True


async def _details(context: JobContext, ids: list[str]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(ids), _DETAILS_PER_CALL):
        chunk = ids[start : start + _DETAILS_PER_CALL]
        answer = await context.call("order_details", json={"productOrderIds": chunk})
        found.extend(expect_list(answer, context.client.name, "order_details", "data"))
    return found


def _more(market: str) -> Callable[[Any], dict[str, Any] | None]:
    def following(answer: Any) -> dict[str, Any] | None:
        more = expect_dict(answer, market, "changed_orders", "data").get("more")
        if not isinstance(more, dict) or not more.get("moreFrom"):
            return None
        return {"lastChangedFrom": more["moreFrom"], "moreSequence": more.get("moreSequence")}

    return following


async def _changes(
    context: JobContext,
    what: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    change_types: tuple[str, ...] = (),
) -> dict[Any, Any]:
    """Every change in the window (24-hour queries, every page), the last per product order;
    without `since`, the seller's incremental window of `what`, moved on once read."""
    market = context.client.name
    if since is None:
        since, until = await since_last(context, what, ORDERS)
        incremental = True
    else:
        until = until or settled_now(context, ORDERS)
        incremental = False
    # Naver's times are in milliseconds: cut ours to match, so no span is empty once sent.
    start, end = _to_millis(since), _to_millis(until)
    changes: dict[Any, Any] = {}
    for low, high in windows(start, end, ORDERS.max_span):
        for change_type in change_types or (None,):
            params = {
                "lastChangedFrom": naver_time(low),
                # lastChangedTo is inclusive, as lastChangedFrom is: the window [low, high)
                # ends a millisecond before `high`, which belongs to the next window only.
                "lastChangedTo": naver_time(high - _MILLISECOND),
                "limitCount": limit,
                "lastChangedType": change_type,
            }
            async for answer in pages(context, "changed_orders", params, _more(market)):
                data = expect_dict(answer, market, "changed_orders", "data")
                for change in expect_list(data, market, "changed_orders", "lastChangeStatuses"):
                    changes[change.get(ORDERS.order_key)] = change
    if incremental:
        mark_collected(context, what, until)
    return changes


async def collect_orders(context: JobContext, payload: CollectOrders) -> dict[str, Any]:
    changes = await _changes(context, "orders", payload.since, payload.until, payload.limit_count)
    await track_open(
        context,
        ((key, change.get("productOrderStatus")) for key, change in changes.items()),
        FINAL_STATUSES,
    )
    if payload.statuses:
        wanted = set(payload.statuses)
        changes = {
            key: change
            for key, change in changes.items()
            if change.get("productOrderStatus") in wanted
        }
    result: dict[str, Any] = {"statuses": list(changes.values()), "count": len(changes)}
    if payload.details and changes:
        result["orders"] = await _details(context, [str(key) for key in changes])
    return result


class CollectClaims(Payload):
    """Cancel, return and exchange changes from `since` to `until` (or since the last run)."""

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    limit_count: int = Field(default=300, ge=1, le=300)


async def collect_claims(context: JobContext, payload: CollectClaims) -> dict[str, Any]:
    changes = await _changes(
        context, "claims", payload.since, payload.until, payload.limit_count, CLAIM_CHANGES
    )
    return {"claims": list(changes.values()), "count": len(changes)}


class RepollOrders(Payload):
    """Read again product orders collected but not yet final: `product_order_ids`, or
    without them the seller's open orders (up to 300, tracked longest first); says which
    are now final (`finished`) and which still are not."""

    product_order_ids: list[str] | None = Field(default=None, min_length=1, max_length=300)


async def repoll_orders(context: JobContext, payload: RepollOrders) -> dict[str, Any]:
    ids = payload.product_order_ids
    if ids is None:
        ids = await open_to_repoll(context, _DETAILS_PER_CALL)
    orders = await _details(context, ids) if ids else []
    statuses = {
        str((order.get("productOrder") or {}).get(ORDERS.order_key)): (
            order.get("productOrder") or {}
        ).get("productOrderStatus")
        for order in orders
    }
    # An id the market no longer returns is final as far as tracking goes.
    await track_open(
        context,
        ((each, statuses.get(each, "GONE")) for each in ids),
        FINAL_STATUSES | {"GONE"},
        reread=payload.product_order_ids is None,
    )
    return {
        "orders": orders,
        "unfinished": [each for each in ids if statuses.get(each) not in FINAL_STATUSES | {None}],
        "finished": [each for each in ids if statuses.get(each) in FINAL_STATUSES],
    }


class CollectOrder(Payload):
    """The product orders of `order_id`, or the given `product_order_ids`, with details."""

    order_id: str | None = Field(default=None, min_length=1)
    product_order_ids: list[str] | None = Field(default=None, min_length=1, max_length=300)

    exactly_one_of: ClassVar[tuple[str, ...]] = ("order_id", "product_order_ids")


async def collect_order(context: JobContext, payload: CollectOrder) -> dict[str, Any]:
    ids = payload.product_order_ids
    if ids is None:
        answer = await context.call("order_product_ids", path={"orderId": payload.order_id})
        ids = [
            str(each)
            for each in expect_list(answer, context.client.name, "order_product_ids", "data")
        ]
    return {"orders": await _details(context, ids) if ids else []}


class AcknowledgeOrders(Payload):
    """Place product orders (발주 확인: the seller has seen them and prepares them), up to
    30 per call."""

    product_order_ids: list[str] = Field(min_length=1, max_length=30)


async def acknowledge_orders(context: JobContext, payload: AcknowledgeOrders) -> dict[str, Any]:
    market = context.client.name

    async def placed(ids: list[str]) -> set[str]:
        """The product orders already placed (an earlier attempt landed)."""
        return {
            str(product.get(ORDERS.order_key))
            for detail in await _details(context, ids)
            if (product := detail.get("productOrder") or {}).get("placeOrderStatus") == "OK"
        }

    def sort(answer: Any) -> list[tuple[str, Verdict, str]]:
        data = expect_dict(answer, market, "confirm", "data")
        verdicts = [
            (str(item.get("productOrderId")), Verdict.DONE, "")
            for item in expect_list(data, market, "confirm", "successProductOrderInfos")
            if isinstance(item, dict)
        ]
        return verdicts + _failed(data, market, "confirm")

    batch = Batch(
        endpoint="confirm",
        items={each: each for each in payload.product_order_ids},
        request=lambda ids: Call("confirm", json={"productOrderIds": ids}),
        sort=sort,
        check=placed,
    )
    return {"acknowledged": await run_batch(context, batch)}


class Dispatch(Payload):
    product_order_id: str = Field(min_length=1)
    delivery_company_code: str = Field(min_length=1)  # CJGLS, HANJIN, EPOST, ...
    tracking_number: str = Field(min_length=1)
    dispatch_date: AwareDatetime | None = None  # now when absent
    delivery_method: Literal["DELIVERY", "DIRECT_DELIVERY", "VISIT_RECEIPT", "NOTHING"] = "DELIVERY"


class ShipOrder(Payload):
    """Dispatch up to 30 product orders; each once."""

    dispatches: list[Dispatch] = Field(min_length=1, max_length=30)


def _dispatch_request(dispatches: list[Dispatch], now: datetime) -> Call:
    body = {
        "dispatchProductOrders": [
            {
                "productOrderId": item.product_order_id,
                "deliveryMethod": item.delivery_method,
                "deliveryCompanyCode": item.delivery_company_code,
                "trackingNumber": item.tracking_number,
                "dispatchDate": naver_time(item.dispatch_date or now),
            }
            for item in dispatches
        ]
    }
    return Call("dispatch", json=body)


def _sort_dispatch(market: str) -> Callable[[Any], list[tuple[str, Verdict, str]]]:
    def sort(answer: Any) -> list[tuple[str, Verdict, str]]:
        data = expect_dict(answer, market, "dispatch", "data")
        verdicts = [
            (str(each), Verdict.DONE, "")
            for each in expect_list(data, market, "dispatch", "successProductOrderIds")
        ]
        return verdicts + _failed(data, market, "dispatch")

    return sort


async def ship_order(context: JobContext, payload: ShipOrder) -> dict[str, Any]:
    now = datetime.now(UTC)

    async def dispatched(items: list[Dispatch]) -> set[str]:
        """The product orders that already carry our tracking number."""
        tracking = {item.product_order_id: item.tracking_number for item in items}
        found = set()
        for detail in await _details(context, list(tracking)) if tracking else []:
            number = str((detail.get("productOrder") or {}).get("productOrderId"))
            sent = (detail.get("delivery") or {}).get("trackingNumber")
            if sent and sent == tracking.get(number):
                found.add(number)
        return found

    batch = Batch(
        endpoint="dispatch",
        items={item.product_order_id: item for item in payload.dispatches},
        request=lambda items: _dispatch_request(items, now),
        sort=_sort_dispatch(context.client.name),
        check=dispatched,
    )
    return {"shipped": await run_batch(context, batch)}


class AnswerInquiry(Payload):
    """Answer a customer inquiry (`inquiry_no`) or a product Q&A question (`question_id`)."""

    inquiry_no: int | None = None
    question_id: int | None = None
    answer: str = Field(min_length=1)

    exactly_one_of: ClassVar[tuple[str, ...]] = ("inquiry_no", "question_id")


def _inquiry_pages(market: str) -> Callable[[Any], dict[str, Any] | None]:
    def following(answer: Any) -> dict[str, Any] | None:
        data = expect_dict(answer, market, "inquiries")
        page, size = int(data.get("page", 1)), int(data.get("size", 1))
        return {"page": page + 1} if page * size < int(data.get("totalElements", 0)) else None

    return following


async def _find_inquiry(context: JobContext, inquiry_no: int, **filters: Any) -> Any:
    """The inquiry `inquiry_no` as the market lists it, or None."""
    market = context.client.name
    today = datetime.now(KST).date()
    params = {
        "startSearchDate": (today - _INQUIRY_LOOKBACK).isoformat(),
        "endSearchDate": today.isoformat(),
        "page": 1,
        "size": 100,
        **filters,
    }
    async for answer in pages(context, "inquiries", params, _inquiry_pages(market)):
        for item in expect_list(answer, market, "inquiries", "content"):
            if isinstance(item, dict) and item.get("inquiryNo") == inquiry_no:
                return item
    return None


async def answer_inquiry(context: JobContext, payload: AnswerInquiry) -> dict[str, Any]:
    if payload.question_id is not None:
        # A PUT sets the answer: sending it again changes nothing.
        answer = await context.call(
            "qna_answer",
            path={"questionId": payload.question_id},
            json={"commentContent": payload.answer},
        )
        return {"answer": answer}
    inquiry_no = payload.inquiry_no
    assert inquiry_no is not None  # the payload gives exactly one of the two

    async def landed() -> Any:
        # Naver takes a second answer as another comment: look before answering again.
        found = await _find_inquiry(context, inquiry_no, answered="true")
        if found is None or not found.get("answered"):
            return NOT_LANDED
        if found.get("answerContent") == payload.answer:
            return {"already_done": True}
        raise OutcomeUnknown(
            "the inquiry has another answer than ours; not answered again",
            market=context.client.name,
            endpoint="inquiry_answer",
        )

    request = Call(
        "inquiry_answer", path={"inquiryNo": inquiry_no}, json={"answerComment": payload.answer}
    )
    return {"answer": await context.effect(request, landed=landed)}


class CollectInquiries(Payload):
    """Customer inquiries from `since` to `until` (days), every page, each once."""

    since: date
    until: date
    answered: bool | None = None


async def _collect(
    context: JobContext,
    endpoint: str,
    params: dict[str, Any],
    following: Callable[[Any], dict[str, Any] | None],
    field: str,
    key: str,
) -> list[Any]:
    """The items under `field` of every page of `endpoint`, each once (by `key`): a page
    may repeat an item the one before it had."""
    found: dict[Any, Any] = {}
    async for answer in pages(context, endpoint, params, following):
        for item in expect_list(answer, context.client.name, endpoint, field):
            found[item.get(key)] = item
    return list(found.values())


async def collect_inquiries(context: JobContext, payload: CollectInquiries) -> dict[str, Any]:
    market = context.client.name
    params = {
        "startSearchDate": payload.since.isoformat(),
        "endSearchDate": payload.until.isoformat(),
        "answered": None if payload.answered is None else str(payload.answered).lower(),
        "page": 1,
        "size": 100,
    }
    found = await _collect(
        context, "inquiries", params, _inquiry_pages(market), "content", "inquiryNo"
    )
    return {"inquiries": found, "count": len(found)}


class CollectQnas(Payload):
    """Product Q&A questions asked from `since` to `until`, every page, each once."""

    since: AwareDatetime
    until: AwareDatetime
    answered: bool | None = None


async def collect_qnas(context: JobContext, payload: CollectQnas) -> dict[str, Any]:
    market = context.client.name

    def following(answer: Any) -> dict[str, Any] | None:
        data = expect_dict(answer, market, "qnas")
        page, pages_total = int(data.get("page", 1)), int(data.get("totalPages", 1))
        return {"page": page + 1} if page < pages_total else None

    params = {
        "fromDate": naver_time(payload.since),
        "toDate": naver_time(payload.until),
        "answered": None if payload.answered is None else str(payload.answered).lower(),
        "page": 1,
        "size": 100,
    }
    found = await _collect(context, "qnas", params, following, "contents", "questionId")
    return {"qnas": found, "count": len(found)}


ClaimAction = Literal["approve_cancel", "approve_return", "reject_return"]
_CLAIM_ENDPOINTS: dict[str, str] = {
    "approve_cancel": "claim_cancel_approve",
    "approve_return": "claim_return_approve",
    "reject_return": "claim_return_reject",
}
# A claim already in the state asked for is refused with this message. [?]
_ALREADY_PROCESSED = ("already processed", "이미 처리")


class ActOnClaim(Payload):
    """Approve a cancel, approve or reject a return (`reason` needed to reject)."""

    product_order_id: str = Field(min_length=1)
    action: ClaimAction
    reason: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _reason(self) -> ActOnClaim:
        if self.action == "reject_return" and self.reason is None:
            raise ValueError("reject_return needs a reason")
        return self


async def act_on_claim(context: JobContext, payload: ActOnClaim) -> dict[str, Any]:
    body = {"rejectReturnReason": payload.reason} if payload.action == "reject_return" else {}
    request = Call(
        _CLAIM_ENDPOINTS[payload.action],
        path={"productOrderId": payload.product_order_id},
        json=body,
    )
    answer = await context.effect(
        request,
        landed=None,
        already=lambda error: any(text in error.message for text in _ALREADY_PROCESSED),
    )
    return {
        "product_order_id": payload.product_order_id,
        "action": payload.action,
        "answer": answer,
    }


class GetProduct(Payload):
    origin_product_no: int | None = None
    channel_product_no: int | None = None

    exactly_one_of: ClassVar[tuple[str, ...]] = ("origin_product_no", "channel_product_no")


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

    at_least_one_of: ClassVar[tuple[str, ...]] = ("price", "stock")


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
    "collect_claims": JobSpec(
        CollectClaims, collect_claims, ("changed_orders",), side_effect=False
    ),
    "collect_inquiries": JobSpec(
        CollectInquiries, collect_inquiries, ("inquiries",), side_effect=False
    ),
    "repoll_orders": JobSpec(RepollOrders, repoll_orders, ("order_details",), side_effect=False),
    "collect_order": JobSpec(
        CollectOrder, collect_order, ("order_product_ids", "order_details"), side_effect=False
    ),
    "acknowledge_orders": JobSpec(
        AcknowledgeOrders, acknowledge_orders, ("confirm", "order_details"), side_effect=True
    ),
    "ship_order": JobSpec(ShipOrder, ship_order, ("dispatch", "order_details"), side_effect=True),
    "answer_inquiry": JobSpec(
        AnswerInquiry,
        answer_inquiry,
        ("inquiry_answer", "qna_answer", "inquiries"),
        side_effect=True,
    ),
    "collect_qnas": JobSpec(CollectQnas, collect_qnas, ("qnas",), side_effect=False),
    "act_on_claim": JobSpec(
        ActOnClaim, act_on_claim, tuple(_CLAIM_ENDPOINTS.values()), side_effect=True
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
