"""The job kinds for Coupang (catalogue "coupang"); the seller is the vendorId."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, model_validator

from markets.answers import expect_dict, expect_list
from markets.client import Call
from markets.effects import Batch, Verdict, run_batch
from markets.errors import PermanentError
from markets.jobs import JobContext, JobSpec, Payload
from markets.market import OrderShape
from markets.paging import (
    day_windows,
    mark_collected,
    open_to_repoll,
    pages,
    since_last,
    track_open,
)

__all__ = ["COUPANG_JOBS", "KST", "ORDERS", "ORDER_STATUSES", "coupang_day"]

OrderStatus = Literal[
    "ACCEPT", "INSTRUCT", "DEPARTURE", "DELIVERING", "FINAL_DELIVERY", "NONE_TRACKING"
]
ORDER_STATUSES: tuple[OrderStatus, ...] = get_args(OrderStatus)
FINAL_STATUSES = frozenset({"FINAL_DELIVERY"})
KST = timezone(timedelta(hours=9))  # the market's own time

ORDERS = OrderShape(
    # ordersheets answers for at most 31 days (createdAtFrom..createdAtTo) per query.
    max_span=timedelta(days=31),
    whole_days=True,
    order_key="shipmentBoxId",
    id_field="shipment_box_id",
    statuses=ORDER_STATUSES,
    settle=timedelta(0),  # queried by creation day: nothing to wait for
    # The scheduler's run just after midnight still reads yesterday once more.
    overlap=timedelta(days=1),
    catch_up=timedelta(days=31),
    first_lookback=timedelta(days=31),
)
# Coupang's "Timeout errors occur" page: order, return and exchange list queries ask the
# gateway for a longer timeout (ms), and the client waits as long (catalogue.toml `timeout`).
EXTENDED_TIMEOUT = {"X-EXTENDED-TIMEOUT": "90000"}
# returnRequests with cancelType=RETURN needs a status (or an orderId) ("Return/Cancellation
# Request List Query"): RU stop-shipment asked, UC return received, CC return completed,
# PR Coupang's check asked. CANCEL takes neither.
ReturnStatus = Literal["RU", "UC", "CC", "PR"]
RETURN_STATUSES: tuple[ReturnStatus, ...] = get_args(ReturnStatus)
# How many tracked orders one repoll_orders without ids reads (one GET each).
_REPOLL_PER_JOB = 50
# onlineInquiries answers for at most 7 days per query.
_INQUIRY_SPAN = timedelta(days=7)
# Failed invoice items that come back with retryRequired=true although a retry fails the
# same way (seen from the market; its "Uploading Waybills" page lists the codes): permanent.
_NEVER_RETRIED = frozenset(
    {"DUPLICATE_INVOICE_NUMBER", "PERMISSION_DENIED", "NOT_FOUND_VENDOR_ITEM", "ALREADY_SHIPPED"}
)
# The reply to an inquiry that already has one is refused with this message. [?]
_ALREADY_ANSWERED = ("already answered", "이미 답변")


def coupang_day(day: date) -> str:
    """The v5 ordersheets date: `yyyy-mm-dd+09:00` (the day in Korean time)."""
    return f"{day.isoformat()}+09:00"


class CollectOrders(Payload):
    """Every order sheet created from `since` to `until` (days, both included) in each of
    `statuses`, every page, each order once. Without `since`: since the seller's last
    collection (its watermark, minus the overlap) through today."""

    since: date | None = None
    until: date | None = None
    statuses: tuple[OrderStatus, ...] = Field(default=ORDER_STATUSES, min_length=1)
    max_per_page: int = Field(default=50, ge=1, le=50)

    @model_validator(mode="after")
    def _ordered(self) -> CollectOrders:
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValueError("until is before since")
        if self.since is None and self.until is not None:
            raise ValueError("until needs since")
        return self


def _next_token(market: str, endpoint: str) -> Callable[[Any], dict[str, Any] | None]:
    def following(answer: Any) -> dict[str, Any] | None:
        token = expect_dict(answer, market, endpoint).get("nextToken")
        return {"nextToken": token} if token else None

    return following


async def collect_orders(context: JobContext, payload: CollectOrders) -> dict[str, Any]:
    market = context.client.name
    moment: datetime | None = None
    if payload.since is None:
        start, moment = await since_last(context, "orders", ORDERS)
        first, last = start.astimezone(KST).date(), moment.astimezone(KST).date()
    else:
        first, last = payload.since, payload.until or datetime.now(KST).date()
    orders: dict[Any, Any] = {}
    pages_read = 0
    for since, until in day_windows(first, last, ORDERS.max_span):
        for status in payload.statuses:
            params = {
                "createdAtFrom": coupang_day(since),
                "createdAtTo": coupang_day(until),
                "maxPerPage": payload.max_per_page,
                "status": status,
            }
            following = _next_token(market, "orders")
            async for answer in pages(
                context, "orders", params, following, headers=EXTENDED_TIMEOUT
            ):
                pages_read += 1
                for order in expect_list(answer, market, "orders", "data"):
                    orders[order.get(ORDERS.order_key)] = order
    await track_open(
        context, ((key, order.get("status")) for key, order in orders.items()), FINAL_STATUSES
    )
    if moment is not None:
        mark_collected(context, "orders", moment)
    return {
        "orders": list(orders.values()),
        "count": len(orders),
        "pages": pages_read,
        "since": first.isoformat(),
        "until": last.isoformat(),
    }


class CollectOrder(Payload):
    """One order by `shipment_box_id`, or every sheet of `order_id`."""

    shipment_box_id: int | None = None
    order_id: int | None = None

    exactly_one_of: ClassVar[tuple[str, ...]] = ("shipment_box_id", "order_id")


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
    """Upload invoices (tracking numbers): one per `vendor_item_id` of each shipment box (a
    bundle of three items is three invoices under one box), each item once."""

    invoices: list[Invoice] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _each_item_once(self) -> ShipOrder:
        keys = [_item_key(invoice) for invoice in self.invoices]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"an item has two invoices: {', '.join(twice)}")
        return self


def _item_key(invoice: Invoice) -> str:
    """One invoice item: `shipmentBoxId/vendorItemId`."""
    return f"{invoice.shipment_box_id}/{invoice.vendor_item_id}"


def _invoice_request(seller: str, invoices: list[Invoice]) -> Call:
    body = {
        "vendorId": seller,
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
            for invoice in invoices
        ],
    }
    return Call("invoices", json=body)


def _sort_invoices(
    market: str, endpoint: str, invoices: list[Invoice]
) -> Callable[[Any], list[tuple[str, Verdict, str]]]:
    """The market answers per box (`responseList[].shipmentBoxId`, a `vendorItemId` where
    it names one): a box's verdict is each of its items' verdict."""
    by_box: dict[str, list[str]] = {}
    for invoice in invoices:
        by_box.setdefault(str(invoice.shipment_box_id), []).append(_item_key(invoice))

    def sort(answer: Any) -> list[tuple[str, Verdict, str]]:
        data = expect_dict(answer, market, endpoint, "data")
        verdicts: list[tuple[str, Verdict, str]] = []
        for item in expect_list(data, market, endpoint, "responseList"):
            item = item if isinstance(item, dict) else {}
            box = str(item.get("shipmentBoxId"))
            one = item.get("vendorItemId")
            keys = [f"{box}/{one}"] if one is not None else by_box.get(box, [box])
            code = str(item.get("resultCode"))
            reason = f"{code}: {item.get('resultMessage')}"
            if item.get("succeed"):
                verdict = Verdict.DONE
            elif item.get("retryRequired") and code not in _NEVER_RETRIED:
                verdict = Verdict.RETRY
            else:
                verdict = Verdict.REFUSED
            verdicts.extend((key, verdict, reason) for key in keys)
        return verdicts

    return sort


def _sort_boxes(market: str, endpoint: str) -> Callable[[Any], list[tuple[str, Verdict, str]]]:
    """A per-box answer whose items are the boxes themselves."""
    return _sort_invoices(market, endpoint, [])


async def ship_order(context: JobContext, payload: ShipOrder) -> dict[str, Any]:
    async def uploaded(invoices: list[Invoice]) -> set[str]:
        """The items that already carry our invoice number (an earlier attempt landed)."""
        found = set()
        boxes: dict[int, list[Invoice]] = {}
        for invoice in invoices:
            boxes.setdefault(invoice.shipment_box_id, []).append(invoice)
        for box, ours in boxes.items():
            try:
                answer = await context.call("order", path={"shipmentBoxId": box})
            except PermanentError:
                continue  # no such box: certainly not ours
            order = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(order, dict):
                continue
            items = order.get("orderItems")
            numbers = {
                item.get("vendorItemId"): item.get("invoiceNumber")
                for item in (items if isinstance(items, list) else [])
                if isinstance(item, dict)
            }
            for invoice in ours:
                number = numbers.get(invoice.vendor_item_id) or order.get("invoiceNumber")
                if number == invoice.invoice_number:
                    found.add(_item_key(invoice))
        return found

    batch = Batch(
        endpoint="invoices",
        items={_item_key(invoice): invoice for invoice in payload.invoices},
        request=lambda invoices: _invoice_request(context.seller, invoices),
        sort=_sort_invoices(context.client.name, "invoices", payload.invoices),
        check=uploaded,
    )
    return {"shipped": await run_batch(context, batch)}


class AcknowledgeOrders(Payload):
    """Confirm orders (ACCEPT -> INSTRUCT, "preparing"), up to 50 shipment boxes per call:
    an order is acknowledged before its invoice is uploaded."""

    shipment_box_ids: list[int] = Field(min_length=1, max_length=50)


async def acknowledge_orders(context: JobContext, payload: AcknowledgeOrders) -> dict[str, Any]:
    market = context.client.name

    async def acknowledged(boxes: list[int]) -> set[str]:
        """The boxes past ACCEPT (an earlier attempt, or the seller's staff, did it)."""
        found = set()
        for box in boxes:
            try:
                answer = await context.call("order", path={"shipmentBoxId": box})
            except PermanentError:
                continue
            order = expect_dict(answer, market, "order").get("data")
            if isinstance(order, dict) and order.get("status") not in (None, "ACCEPT"):
                found.add(str(box))
        return found

    batch = Batch(
        endpoint="acknowledge",
        items={str(box): box for box in payload.shipment_box_ids},
        request=lambda boxes: Call(
            "acknowledge", json={"vendorId": context.seller, "shipmentBoxIds": boxes}
        ),
        sort=_sort_boxes(market, "acknowledge"),
        check=acknowledged,
    )
    return {"acknowledged": await run_batch(context, batch)}


class AnswerInquiry(Payload):
    """Reply to a customer inquiry; `reply_by` is the WING user id that answers."""

    inquiry_id: int
    content: str = Field(min_length=1)
    reply_by: str = Field(min_length=1)


def _already_answered(error: PermanentError) -> bool:
    return any(text in error.message for text in _ALREADY_ANSWERED)


async def answer_inquiry(context: JobContext, payload: AnswerInquiry) -> dict[str, Any]:
    # Coupang refuses a second reply, so after a lost answer the reply is sent again and
    # "already answered" means the first one landed.
    body = {"content": payload.content, "vendorId": context.seller, "replyBy": payload.reply_by}
    request = Call("inquiry_reply", path={"inquiryId": payload.inquiry_id}, json=body)
    answer = await context.effect(request, landed=None, already=_already_answered)
    return {"inquiry_id": payload.inquiry_id, "answer": answer}


class CollectInquiries(Payload):
    """Customer inquiries from `since` to `until` (days), in 7-day queries, every page."""

    since: date
    until: date
    answered: Literal["ALL", "ANSWERED", "NOANSWER"] = "ALL"
    page_size: int = Field(default=50, ge=1, le=50)


def _page_numbers(market: str, endpoint: str) -> Callable[[Any], dict[str, Any] | None]:
    """The next `pageNum` of an inquiry list (its `data.pagination`)."""

    def following(answer: Any) -> dict[str, Any] | None:
        data = expect_dict(answer, market, endpoint, "data")
        paging = expect_dict(data, market, endpoint, "pagination")
        page, total = int(paging.get("currentPage", 1)), int(paging.get("totalPages", 1))
        return {"pageNum": page + 1} if page < total else None

    return following


async def _collect_inquiries(
    context: JobContext,
    endpoint: str,
    first: date,
    last: date,
    page_size: int,
    **filters: Any,
) -> dict[str, Any]:
    """Every inquiry of `endpoint` (online or call-center: the same query and answer) from
    `first` to `last`, in 7-day queries, every page, each once."""
    market = context.client.name
    following = _page_numbers(market, endpoint)
    found: dict[Any, Any] = {}
    for since, until in day_windows(first, last, _INQUIRY_SPAN):
        params = {
            # Required in the query as well as the path (the "Online Inquiry" page).
            "vendorId": context.seller,
            "inquiryStartAt": since.isoformat(),
            "inquiryEndAt": until.isoformat(),
            **filters,
            "pageSize": page_size,
            "pageNum": 1,
        }
        async for answer in pages(context, endpoint, params, following):
            data = expect_dict(answer, market, endpoint, "data")
            for item in expect_list(data, market, endpoint, "content"):
                found[item.get("inquiryId")] = item
    return {"inquiries": list(found.values()), "count": len(found)}


async def collect_inquiries(context: JobContext, payload: CollectInquiries) -> dict[str, Any]:
    return await _collect_inquiries(
        context,
        "inquiries",
        payload.since,
        payload.until,
        payload.page_size,
        answeredType=payload.answered,
    )


class CollectClaims(Payload):
    """Cancel and return requests created from `since` to `until` (days), every page; returns
    in each of `return_statuses` (the market needs one per query)."""

    since: date
    until: date
    claim_types: tuple[Literal["CANCEL", "RETURN"], ...] = ("CANCEL", "RETURN")
    return_statuses: tuple[ReturnStatus, ...] = Field(default=RETURN_STATUSES, min_length=1)


async def collect_claims(context: JobContext, payload: CollectClaims) -> dict[str, Any]:
    market = context.client.name
    found: dict[Any, Any] = {}
    for since, until in day_windows(payload.since, payload.until, ORDERS.max_span):
        queries: list[dict[str, Any]] = [
            {"cancelType": claim_type}
            for claim_type in payload.claim_types
            if claim_type == "CANCEL"
        ]
        if "RETURN" in payload.claim_types:
            queries += [
                {"cancelType": "RETURN", "status": status} for status in payload.return_statuses
            ]
        for query in queries:
            params = {
                "createdAtFrom": since.isoformat(),
                "createdAtTo": until.isoformat(),
                **query,
                "maxPerPage": 50,
            }
            following = _next_token(market, "claims")
            async for answer in pages(
                context, "claims", params, following, headers=EXTENDED_TIMEOUT
            ):
                for claim in expect_list(answer, market, "claims", "data"):
                    found[claim.get("receiptId")] = claim
    return {"claims": list(found.values()), "count": len(found)}


class RepollOrders(Payload):
    """Read again orders collected but not yet final: `shipment_box_ids`, or without them
    the seller's open orders (up to 50, tracked longest first); says which are now final
    (`finished`) and which still are not."""

    shipment_box_ids: list[int] | None = Field(default=None, min_length=1, max_length=50)


async def repoll_orders(context: JobContext, payload: RepollOrders) -> dict[str, Any]:
    boxes = payload.shipment_box_ids
    if boxes is None:
        boxes = [int(box) for box in await open_to_repoll(context, _REPOLL_PER_JOB)]
    orders, gone = [], []
    for box in boxes:
        try:
            answer = await context.call("order", path={"shipmentBoxId": box})
        except PermanentError:
            if payload.shipment_box_ids is not None:
                raise
            gone.append(box)  # tracked, but the market no longer knows it
            continue
        orders.append(expect_dict(answer, context.client.name, "order", "data"))
    seen = [(order.get(ORDERS.order_key), order.get("status")) for order in orders]
    await track_open(
        context,
        [*seen, *((box, "GONE") for box in gone)],
        FINAL_STATUSES | {"GONE"},
        reread=payload.shipment_box_ids is None,
    )
    return {
        "orders": orders,
        "unfinished": [box for box, status in seen if status not in FINAL_STATUSES],
        "finished": [box for box, status in seen if status in FINAL_STATUSES],
    }


ReturnAction = Literal["stop_shipment", "already_shipped", "confirm_receipt", "approve_return"]
_RETURN_ENDPOINTS: dict[str, str] = {
    "stop_shipment": "return_stop_shipment",
    "already_shipped": "return_already_shipped",
    "confirm_receipt": "return_receipt_confirm",
    "approve_return": "return_approve",
}
# A return request already in the state an action leads to is refused so. [?]
_ALREADY_PROCESSED = ("already processed", "이미 처리")


class ActOnClaim(Payload):
    """Act on a return request (`receipt_id`): stop the shipment (the buyer cancelled while
    it was prepared), say it already shipped (with its invoice), confirm the returned goods
    arrived, approve the return. `cancel_count` for stop_shipment and approve_return."""

    receipt_id: int
    action: ReturnAction
    cancel_count: int | None = Field(default=None, ge=1)
    delivery_company_code: str | None = Field(default=None, min_length=1)
    invoice_number: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _needs(self) -> ActOnClaim:
        if self.action in ("stop_shipment", "approve_return") and self.cancel_count is None:
            raise ValueError(f"{self.action} needs cancel_count")
        if self.action == "already_shipped" and (
            self.delivery_company_code is None or self.invoice_number is None
        ):
            raise ValueError("already_shipped needs delivery_company_code and invoice_number")
        return self


async def act_on_claim(context: JobContext, payload: ActOnClaim) -> dict[str, Any]:
    body: dict[str, Any] = {"vendorId": context.seller, "receiptId": payload.receipt_id}
    if payload.cancel_count is not None:
        body["cancelCount"] = payload.cancel_count
    if payload.action == "already_shipped":
        body["deliveryCompanyCode"] = payload.delivery_company_code
        body["invoiceNumber"] = payload.invoice_number
    request = Call(
        _RETURN_ENDPOINTS[payload.action], path={"receiptId": payload.receipt_id}, json=body
    )
    answer = await context.effect(
        request,
        landed=None,
        already=lambda error: any(text in error.message for text in _ALREADY_PROCESSED),
    )
    return {"receipt_id": payload.receipt_id, "action": payload.action, "answer": answer}


class CollectCallCenterInquiries(Payload):
    """Inquiries passed on by Coupang's call center from `since` to `until` (days), in
    7-day queries, every page; `status` NONE is every one."""

    since: date
    until: date
    status: Literal["NONE", "ANSWER", "NO_ANSWER", "TRANSFER"] = "NONE"
    page_size: int = Field(default=30, ge=1, le=30)


async def collect_call_center_inquiries(
    context: JobContext, payload: CollectCallCenterInquiries
) -> dict[str, Any]:
    return await _collect_inquiries(
        context,
        "call_center_inquiries",
        payload.since,
        payload.until,
        payload.page_size,
        partnerCounselingStatus=payload.status,
    )


class AnswerCallCenterInquiry(Payload):
    """Reply to a call-center inquiry (`parent_answer_id`: the call center's answer it
    follows). Coupang takes a reply only within 24 hours of the inquiry."""

    inquiry_id: int
    content: str = Field(min_length=1)
    reply_by: str = Field(min_length=1)
    parent_answer_id: int


async def answer_call_center_inquiry(
    context: JobContext, payload: AnswerCallCenterInquiry
) -> dict[str, Any]:
    body = {
        "vendorId": context.seller,
        "inquiryId": payload.inquiry_id,
        "content": payload.content,
        "replyBy": payload.reply_by,
        "parentAnswerId": payload.parent_answer_id,
    }
    request = Call("call_center_reply", path={"inquiryId": payload.inquiry_id}, json=body)
    answer = await context.effect(request, landed=None, already=_already_answered)
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

    at_least_one_of: ClassVar[tuple[str, ...]] = ("price", "quantity")


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
    "collect_inquiries": JobSpec(
        CollectInquiries, collect_inquiries, ("inquiries",), side_effect=False
    ),
    "collect_claims": JobSpec(CollectClaims, collect_claims, ("claims",), side_effect=False),
    "repoll_orders": JobSpec(RepollOrders, repoll_orders, ("order",), side_effect=False),
    "collect_order": JobSpec(
        CollectOrder, collect_order, ("order", "order_by_order_id"), side_effect=False
    ),
    "acknowledge_orders": JobSpec(
        AcknowledgeOrders, acknowledge_orders, ("acknowledge", "order"), side_effect=True
    ),
    "ship_order": JobSpec(ShipOrder, ship_order, ("invoices", "order"), side_effect=True),
    "answer_inquiry": JobSpec(AnswerInquiry, answer_inquiry, ("inquiry_reply",), side_effect=True),
    "act_on_claim": JobSpec(
        ActOnClaim, act_on_claim, tuple(_RETURN_ENDPOINTS.values()), side_effect=True
    ),
    "collect_call_center_inquiries": JobSpec(
        CollectCallCenterInquiries,
        collect_call_center_inquiries,
        ("call_center_inquiries",),
        side_effect=False,
    ),
    "answer_call_center_inquiry": JobSpec(
        AnswerCallCenterInquiry,
        answer_call_center_inquiry,
        ("call_center_reply",),
        side_effect=True,
    ),
    "get_product": JobSpec(GetProduct, get_product, ("product",), side_effect=False),
    "update_product": JobSpec(UpdateProduct, update_product, ("price", "stock"), side_effect=True),
}
