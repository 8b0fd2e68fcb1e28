"""A local Coupang Open API: CEA HMAC checked like the real gateway, a per-vendor limit.

Each vendor may make `rate` calls in any trailing second, across every API; a
call over it gets 429 and blocks the vendor for `block_seconds`, doubled with
each further violation (Coupang blocks for minutes, longer for repeat abuse).
At 90 % of the limit answers carry `X-CAG-Warnings`. As strict as the market:
ordersheets need v5 dates (`yyyy-mm-dd+09:00`), at most 31 days and a status;
a second reply to an inquiry is refused.
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from markets.coupang.auth import sign
from markets.coupang.simulator_data import (
    COUPANG_STATUSES,
    DEFAULT_COUPANG_CYCLE,
    coupang_call_center,
    coupang_claims,
    coupang_inquiries,
    coupang_orders,
    coupang_products,
)
from markets.simulators.state import Handler, SimState, simulator_app

__all__ = ["DEFAULT_KEYS", "TEST_CREDENTIALS", "coupang_app", "make_app"]

# access key -> (vendorId, secret key)
DEFAULT_KEYS: Mapping[str, tuple[str, str]] = {"test-access-key": ("A00012345", "test-secret-key")}
_ORDERS = "/v2/providers/openapi/apis/api/v5/vendors/{vendorId}"
_V4 = "/v2/providers/openapi/apis/api/v4/vendors/{vendorId}"
_PRODUCTS = "/v2/providers/seller_api/apis/api/v1/marketplace"
_HEADER = re.compile(
    r"^CEA algorithm=HmacSHA256,\s*access-key=([^,\s]+),\s*signed-date=(\d{6}T\d{6}Z),"
    r"\s*signature=([0-9a-f]{64})$"
)
_SIGNATURE_LIFETIME = timedelta(minutes=5)
_VENDOR = web.RequestKey("vendor", str)
_V5_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})\+09:00$")
_MAX_DAYS = 31
_KST = timezone(timedelta(hours=9))
# The list queries Coupang's "Timeout errors occur" page asks X-EXTENDED-TIMEOUT for.
_LISTS = frozenset({"orders", "claims"})
# What the gateway answers for a while after a burst ("403 Forbidden" page).
_ACCESS_DENIED = (
    "<HTML><HEAD>\n<TITLE>Access Denied</TITLE>\n</HEAD><BODY>\n<H1>Access Denied</H1>\n"
    "You don't have permission to access this server.</BODY>\n</HTML>\n"
)
# The first key pair as lanes reads it (`LANES_CREDENTIALS__COUPANG__<NAME>`): a vendor's keys
# are its own, `<vendorId>_<name>`, never market-wide.
_TEST_ACCESS, (_TEST_VENDOR, _TEST_SECRET) = next(iter(DEFAULT_KEYS.items()))
TEST_CREDENTIALS: Mapping[str, str] = {
    f"{_TEST_VENDOR}_access_key": _TEST_ACCESS,
    f"{_TEST_VENDOR}_secret_key": _TEST_SECRET,
}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": "ERROR", "message": message, "data": None}, status=status)


def _ok(data: Any, **extra: Any) -> web.Response:
    return web.json_response({"code": 200, "message": "OK", "data": data, **extra})


@dataclass
class _Vendor:
    secret: str
    orders: list[dict[str, Any]]
    inquiries: list[dict[str, Any]]
    products: dict[int, dict[str, Any]]
    claims: list[dict[str, Any]]
    call_center: list[dict[str, Any]]
    arrivals: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    violations: int = 0


class _Coupang:
    def __init__(
        self,
        keys: Mapping[str, tuple[str, str]],
        *,
        rate: float,
        block_seconds: float,
        orders: int,
        start: datetime,
        days: int,
        seed: int,
        cycle: tuple[str, ...],
        blocks: list[float],
    ) -> None:
        self.keys = dict(keys)
        self.blocks = blocks
        self.rate = rate
        self.block_seconds = block_seconds
        self.vendors = {}
        for vendor, secret in keys.values():
            sheets = coupang_orders(vendor, orders, start, days, seed, cycle)
            self.vendors[vendor] = _Vendor(
                secret=secret,
                orders=sheets,
                inquiries=coupang_inquiries(vendor, 40, start, seed),
                products=coupang_products(vendor, 20, seed),
                claims=coupang_claims(sheets),
                call_center=coupang_call_center(vendor, 20, start, seed),
            )

    def authenticate(self, request: web.Request, seen: Counter[str]) -> str | web.Response:
        """The vendorId the request is signed for, or the gateway's 401/403; each access
        key is counted in `seen`."""
        match = _HEADER.match(request.headers.get("Authorization", ""))
        if match is None:
            return _error(401, "HMAC format is invalid.")
        access_key, date_text, signature = match.groups()
        seen[access_key] += 1
        found = self.keys.get(access_key)
        if found is None:
            return _error(401, "Invalid access key.")
        vendor, secret = found
        try:
            signed = datetime.strptime(date_text, "%y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return _error(401, "HMAC format is invalid.")
        if abs(datetime.now(UTC) - signed) > _SIGNATURE_LIFETIME:
            return _error(401, "Specified signature is expired.")
        url = request.rel_url
        expected = sign(secret, date_text, request.method, url.raw_path, url.raw_query_string)
        if expected != signature:
            return _error(401, "Invalid signature.")
        path_vendor = request.match_info.get("vendorId")
        if path_vendor is not None and path_vendor != vendor:
            return _error(403, f"vendorId {path_vendor} does not belong to this access key.")
        return vendor

    def admit(self, vendor: str) -> tuple[bool, bool]:
        """(admitted, near the limit): a sliding one-second window per vendor."""
        state = self.vendors[vendor]
        now = time.monotonic()
        if now < state.blocked_until:
            return False, True
        while state.arrivals and state.arrivals[0] <= now - 1.0:
            state.arrivals.popleft()
        if len(state.arrivals) + 1 > self.rate:
            # Each violation blocks longer than the last.
            state.violations += 1
            block = self.block_seconds * 2 ** (state.violations - 1)
            self.blocks.append(block)
            state.blocked_until = now + block
            return False, True
        state.arrivals.append(now)
        return True, len(state.arrivals) >= 0.9 * self.rate


def coupang_app(
    *,
    keys: Mapping[str, tuple[str, str]] = DEFAULT_KEYS,
    rate: float = 10.0,
    block_seconds: float = 5.0,
    orders: int = 120,
    start: datetime | None = None,
    days: int = 30,
    seed: int = 1,
    statuses: Sequence[str] = DEFAULT_COUPANG_CYCLE,
    state: SimState | None = None,
) -> web.Application:
    """The simulator; `keys` maps access key -> (vendorId, secret key). Orders are created
    from `start` (default 30 days ago) over `days` days, their statuses going round
    `statuses` (`COUPANG_STATUSES` for orders in every status)."""
    begin = start or datetime.now(UTC) - timedelta(days=days)
    sim = state or SimState()
    market = _Coupang(
        keys,
        rate=rate,
        block_seconds=block_seconds,
        orders=orders,
        start=begin,
        days=days,
        seed=seed,
        cycle=tuple(statuses),
        blocks=sim.blocks,
    )

    async def _through_gateway(
        request: web.Request, handler: Handler, name: str
    ) -> web.StreamResponse:
        if sim.faults.access_denied > 0:
            sim.faults.access_denied -= 1
            return web.Response(status=403, text=_ACCESS_DENIED, content_type="text/html")
        vendor = market.authenticate(request, sim.keys_seen)
        if isinstance(vendor, web.Response):
            return vendor
        if name in _LISTS and sim.faults.slow_lists and "X-EXTENDED-TIMEOUT" not in request.headers:
            return _error(504, "Gateway Timeout (a list query without X-EXTENDED-TIMEOUT)")
        admitted, near = market.admit(vendor)
        if not admitted:
            return _error(429, "Too many requests: the vendor is blocked for a while.")
        if await sim.fails(name):
            return _error(sim.faults.status, "Internal Server Error")
        request[_VENDOR] = vendor
        response = await handler(request)
        if near:
            response.headers["X-CAG-Warnings"] = "rate limit warning: 90% of the threshold reached"
        return response

    def vendor_of(request: web.Request) -> _Vendor:
        return market.vendors[request[_VENDOR]]

    def v5_day(query: Mapping[str, str], name: str) -> date:
        found = _V5_DAY.match(query.get(name, ""))
        if found is None:
            raise ValueError(f"{name} must be yyyy-mm-dd+09:00")
        return date.fromisoformat(found.group(1))

    def plain_day(query: Mapping[str, str], name: str) -> date:
        return date.fromisoformat(query[name])

    def token_page(
        request: web.Request,
        rows: list[dict[str, Any]],
        day: Callable[[Mapping[str, str], str], date],
        fields: tuple[str, str, str],
        choice: str,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str] | web.Response:
        """A created-at window's rows whose `fields` = (choice field, day field, token field)
        match the query: (page, rest, next token), or the market's 400."""
        chosen, day_field, key = fields
        query = request.query
        try:
            since, until = day(query, "createdAtFrom"), day(query, "createdAtTo")
            wanted = query[choice]
            per_page = int(query.get("maxPerPage", "50"))
            after = int(query.get("nextToken") or 0)
        except (KeyError, ValueError) as exc:
            return _error(400, f"invalid or missing parameter: {exc}")
        if not 1 <= per_page <= 50:
            return _error(400, "maxPerPage must be 1..50")
        if until < since or (until - since).days + 1 > _MAX_DAYS:
            return _error(400, f"the search period may be at most {_MAX_DAYS} days")
        matching = [
            row
            for row in rows
            if row[chosen] == wanted
            and since <= date.fromisoformat(row[day_field][:10]) <= until
            and row[key] >= after
        ]
        page, rest = matching[:per_page], matching[per_page:]
        return page, rest, str(rest[0][key]) if rest else ""

    async def list_orders(request: web.Request) -> web.Response:
        if request.query.get("status") not in COUPANG_STATUSES:
            return _error(400, f"status {request.query.get('status')} is not an order status")
        fields = ("status", "orderedAt", "shipmentBoxId")
        found = token_page(request, vendor_of(request).orders, v5_day, fields, "status")
        if isinstance(found, web.Response):
            return found
        page, rest, token = found
        # An order not yet served moves on (the seller's staff works while we page).
        for order in rest[: sim.faults.change_while_paging]:
            sim.faults.change_while_paging -= 1
            following = COUPANG_STATUSES.index(order["status"]) + 1
            order["status"] = COUPANG_STATUSES[min(following, len(COUPANG_STATUSES) - 1)]
        await sim.faults.page_served(len(page))
        return _ok(page, nextToken=token)

    async def claims(request: web.Request) -> web.Response:
        query = request.query
        if query.get("cancelType") == "RETURN" and not (
            query.get("status") or query.get("orderId")
        ):
            return _error(400, "status or orderId is required when cancelType=RETURN")
        rows = [
            claim
            for claim in vendor_of(request).claims
            if query.get("status") in (None, claim.get("status"))
            and query.get("orderId") in (None, str(claim["orderId"]))
        ]
        fields = ("cancelType", "createdAt", "receiptId")
        found = token_page(request, rows, plain_day, fields, "cancelType")
        if isinstance(found, web.Response):
            return found
        page, _rest, token = found
        return _ok(page, nextToken=token)

    def find_order(request: web.Request, key: str, value: int) -> list[dict[str, Any]]:
        return [order for order in vendor_of(request).orders if order[key] == value]

    async def one_order(request: web.Request) -> web.Response:
        found = find_order(request, "shipmentBoxId", int(request.match_info["shipmentBoxId"]))
        return _ok(found[0]) if found else _error(400, "shipmentBoxId not found")

    async def order_sheets(request: web.Request) -> web.Response:
        found = find_order(request, "orderId", int(request.match_info["orderId"]))
        return _ok(found) if found else _error(400, "orderId not found")

    async def acknowledge(request: web.Request) -> web.Response:
        body = await request.json()
        boxes = body.get("shipmentBoxIds")
        if not isinstance(boxes, list) or not 1 <= len(boxes) <= 50:
            return _error(400, "shipmentBoxIds: 1 to 50 shipment boxes")
        results = []
        for box in boxes:
            found = find_order(request, "shipmentBoxId", box)
            if found and found[0]["status"] == "ACCEPT":
                found[0]["status"] = "INSTRUCT"
                sim.effects[f"acknowledge:{box}"] += 1
            ok = bool(found) and found[0]["status"] == "INSTRUCT"
            message = "" if ok else "shipmentBoxId not found" if not found else "past ACCEPT"
            results.append(
                {
                    "shipmentBoxId": box,
                    "succeed": ok,
                    "resultCode": "OK" if ok else "FAIL",
                    "retryRequired": False,
                    "resultMessage": message,
                }
            )
        succeeded = sum(1 for item in results if item["succeed"])
        code = 0 if succeeded == len(results) else 1 if succeeded else 99
        return _ok({"responseCode": code, "responseMessage": "", "responseList": results})

    def box_verdict(vendor: _Vendor, box: Any, dtos: list[dict[str, Any]]) -> tuple[str, str, bool]:
        """(result code, message, retry required) for one box's invoices; "OK" ships them.
        As Coupang's "Uploading Waybills": one invoice per vendorItemId of the box, all of
        them unless the box is split; only an acknowledged (INSTRUCT) order ships."""
        found = [order for order in vendor.orders if order["shipmentBoxId"] == box]
        if not found:
            return "FAIL", "shipmentBoxId not found", False
        order = found[0]
        if order["status"] == "ACCEPT":
            return "FAIL", "the order is not acknowledged (ACCEPT): acknowledge it first", False
        items = {item["vendorItemId"]: item for item in order["orderItems"]}
        sent = {dto.get("vendorItemId") for dto in dtos}
        unknown = sent - set(items)
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            return "NOT_FOUND_VENDOR_ITEM", f"vendorItemId {names} not in the box", False
        unshipped = {key for key, item in items.items() if not item["invoiceNumber"]}
        if order["status"] not in ("INSTRUCT", "DEPARTURE") or not unshipped:
            return "FAIL", "already shipped", False
        split = all(dto.get("splitShipping") for dto in dtos)
        missing = sorted(unshipped - sent)
        if missing and not split:
            return "FAIL", f"every vendorItemId of the box needs its invoice: {missing}", False
        numbers = {str(dto.get("invoiceNumber", "")) for dto in dtos}
        for other in vendor.orders:
            if other["shipmentBoxId"] != box and other["invoiceNumber"] in numbers:
                # The market says retryRequired for this one, although a retry cannot help.
                return "DUPLICATE_INVOICE_NUMBER", "the invoice number is used by another box", True
        return "OK", "", False

    async def invoices(request: web.Request) -> web.Response:
        body = await request.json()
        dtos = body.get("orderSheetInvoiceApplyDtos")
        if not isinstance(dtos, list) or not dtos:
            return _error(400, "orderSheetInvoiceApplyDtos is required")
        boxes: dict[Any, list[dict[str, Any]]] = {}
        for dto in dtos:
            boxes.setdefault(dto.get("shipmentBoxId"), []).append(dto)
            sim.items_posted[f"{dto.get('shipmentBoxId')}/{dto.get('vendorItemId')}"] += 1
        vendor = vendor_of(request)
        results = []
        for box, sent in boxes.items():
            if sim.faults.fails_once(str(box)):
                code, message, retry = "FAIL", "temporarily unavailable, retry", True
            else:
                code, message, retry = box_verdict(vendor, box, sent)
            if code == "OK":
                order = next(order for order in vendor.orders if order["shipmentBoxId"] == box)
                for dto in sent:
                    sim.effects[f"invoice:{box}/{dto.get('vendorItemId')}"] += 1
                    for item in order["orderItems"]:
                        if item["vendorItemId"] == dto.get("vendorItemId"):
                            item["invoiceNumber"] = dto.get("invoiceNumber", "")
                order["invoiceNumber"] = sent[-1].get("invoiceNumber", "")
                order["deliveryCompanyName"] = sent[-1].get("deliveryCompanyCode", "")
                if all(item["invoiceNumber"] for item in order["orderItems"]):
                    order["status"] = "DEPARTURE"
            results.append(
                {
                    "shipmentBoxId": box,
                    "succeed": code == "OK",
                    "resultCode": code,
                    "retryRequired": retry,
                    "resultMessage": message,
                }
            )
        succeeded = sum(1 for item in results if item["succeed"])
        overall = 0 if succeeded == len(results) else 1 if succeeded else 99
        return _ok(
            {
                "responseCode": overall,
                "responseMessage": "SUCCESS" if overall == 0 else "FAILED",
                "responseList": results,
            }
        )

    def inquiry_page(
        request: web.Request,
        items: list[dict[str, Any]],
        keep: Callable[[dict[str, Any]], bool],
    ) -> web.Response:
        """One page of the `items` asked within the query's period (7 days at most) that
        `keep`: product inquiries and call-center inquiries list alike."""
        query = request.query
        if query.get("vendorId") != request[_VENDOR]:
            return _error(400, "vendorId is required in the query (the path's vendorId)")
        try:
            since = date.fromisoformat(query["inquiryStartAt"])
            until = date.fromisoformat(query["inquiryEndAt"])
            page = int(query.get("pageNum", "1"))
            size = int(query.get("pageSize", "10"))
        except (KeyError, ValueError) as exc:
            return _error(400, f"invalid or missing parameter: {exc}")
        if (until - since).days > 7:
            return _error(400, "the inquiry period may be at most 7 days")
        matching = [
            item
            for item in items
            if since <= date.fromisoformat(item["inquiryAt"][:10]) <= until and keep(item)
        ]
        content = matching[(page - 1) * size : page * size]
        pagination = {
            "currentPage": page,
            "totalPages": max(1, -(-len(matching) // size)),
            "totalElements": len(matching),
            "countPerPage": size,
        }
        return _ok({"content": content, "pagination": pagination})

    async def inquiries(request: web.Request) -> web.Response:
        answered = request.query.get("answeredType", "ALL")
        return inquiry_page(
            request,
            vendor_of(request).inquiries,
            lambda item: (
                answered == "ALL" or (answered == "ANSWERED") == bool(item["commentDtoList"])
            ),
        )

    async def reply(request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("content") or not body.get("replyBy"):
            return _error(400, "content and replyBy are required")
        inquiry_id = int(request.match_info["inquiryId"])
        for item in vendor_of(request).inquiries:
            if item["inquiryId"] == inquiry_id:
                if item["commentDtoList"]:
                    return _error(400, "이미 답변이 등록된 문의입니다 (already answered)")
                sim.effects[f"reply:{inquiry_id}"] += 1
                item["commentDtoList"].append(
                    {"content": body["content"], "replyBy": body["replyBy"]}
                )
                return _ok(None)
        return _error(400, "inquiry not found")

    def find_claim(request: web.Request) -> dict[str, Any] | None:
        wanted = int(request.match_info["receiptId"])
        return next(
            (claim for claim in vendor_of(request).claims if claim["receiptId"] == wanted), None
        )

    def return_action(before: tuple[str, ...], after: str, needs: tuple[str, ...]) -> Handler:
        """A return request's action: from a `before` receipt status to `after`."""

        async def act(request: web.Request) -> web.Response:
            body = await request.json()
            missing = [name for name in ("vendorId", "receiptId", *needs) if not body.get(name)]
            if missing:
                return _error(400, f"{', '.join(missing)} required")
            claim = find_claim(request)
            if claim is None or claim["cancelType"] != "RETURN":
                return _error(400, "There is no history of the return request")
            if claim["receiptStatus"] == after:
                return _error(400, "already processed (이미 처리되었습니다)")
            if claim["receiptStatus"] not in before:
                return _error(400, f"the return is {claim['receiptStatus']}")
            sim.effects[f"return:{claim['receiptId']}:{after}"] += 1
            claim["receiptStatus"] = after
            return _ok({"resultCode": "SUCCESS", "resultMessage": "OK"})

        return act

    async def call_center(request: web.Request) -> web.Response:
        status = request.query.get("partnerCounselingStatus", "NONE")
        return inquiry_page(
            request,
            vendor_of(request).call_center,
            lambda item: status in ("NONE", item["partnerCounselingStatus"]),
        )

    async def call_center_reply(request: web.Request) -> web.Response:
        body = await request.json()
        missing = [
            name
            for name in ("vendorId", "inquiryId", "content", "replyBy", "parentAnswerId")
            if not body.get(name)
        ]
        if missing:
            return _error(400, f"{', '.join(missing)} required")
        wanted = int(request.match_info["inquiryId"])
        for item in vendor_of(request).call_center:
            if item["inquiryId"] != wanted:
                continue
            if item["replies"]:
                return _error(400, "이미 답변이 등록된 문의입니다 (already answered)")
            asked = datetime.fromisoformat(item["inquiryAt"]).replace(tzinfo=_KST)
            if sim.now() - asked > timedelta(hours=24):
                return _error(400, "the 24-hour reply period of this inquiry is over")
            sim.effects[f"call_center_reply:{wanted}"] += 1
            item["replies"].append({"content": body["content"], "replyBy": body["replyBy"]})
            item["partnerCounselingStatus"] = "ANSWER"
            return _ok(None)
        return _error(400, "inquiry not found")

    async def product(request: web.Request) -> web.Response:
        found = vendor_of(request).products.get(int(request.match_info["sellerProductId"]))
        if found is None:
            return _error(400, "sellerProductId not found")
        return web.json_response({"code": "SUCCESS", "message": "", "data": found})

    def vendor_item(request: web.Request) -> dict[str, Any] | None:
        wanted = int(request.match_info["vendorItemId"])
        for item in vendor_of(request).products.values():
            for variant in item["items"]:
                if variant["vendorItemId"] == wanted:
                    found: dict[str, Any] = variant
                    return found
        return None

    def item_setter(field: str, param: str, message: str) -> Handler:
        async def set_field(request: web.Request) -> web.Response:
            item = vendor_item(request)
            if item is None:
                return _error(400, "vendorItemId not found")
            item[field] = int(request.match_info[param])
            return web.json_response({"code": "SUCCESS", "message": message, "data": None})

        return set_field

    app = simulator_app(sim, _through_gateway)
    routes = app.router
    routes.add_get(f"{_ORDERS}/ordersheets", list_orders, name="orders")
    routes.add_get(f"{_ORDERS}/ordersheets/{{shipmentBoxId:\\d+}}", one_order, name="order")
    routes.add_get(
        f"{_ORDERS}/{{orderId:\\d+}}/ordersheets", order_sheets, name="order_by_order_id"
    )
    routes.add_put(f"{_V4}/ordersheets/acknowledgement", acknowledge, name="acknowledge")
    routes.add_post(f"{_V4}/orders/invoices", invoices, name="invoices")
    routes.add_get(f"{_V4}/onlineInquiries", inquiries, name="inquiries")
    routes.add_get(f"{_V4}/returnRequests", claims, name="claims")
    routes.add_post(
        f"{_V4}/onlineInquiries/{{inquiryId:\\d+}}/replies", reply, name="inquiry_reply"
    )
    routes.add_get(f"{_PRODUCTS}/seller-products/{{sellerProductId:\\d+}}", product, name="product")
    receipt = f"{_V4}/returnRequests/{{receiptId:\\d+}}"
    stop = ("RELEASE_STOP_UNCHECKED",)
    for action, name, before, after, needs in (
        ("stoppedShipment", "return_stop_shipment", stop, "RETURNS_COMPLETED", ("cancelCount",)),
        (
            "completedShipment",
            "return_already_shipped",
            stop,
            "RETURNS_UNCHECKED",
            ("deliveryCompanyCode", "invoiceNumber"),
        ),
        (
            "receiveConfirmation",
            "return_receipt_confirm",
            ("RETURNS_UNCHECKED",),
            "VENDOR_WAREHOUSE_CONFIRM",
            (),
        ),
        (
            "approval",
            "return_approve",
            ("VENDOR_WAREHOUSE_CONFIRM",),
            "RETURNS_COMPLETED",
            ("cancelCount",),
        ),
    ):
        routes.add_put(f"{receipt}/{action}", return_action(before, after, needs), name=name)
    routes.add_get(f"{_V4}/callCenterInquiries", call_center, name="call_center_inquiries")
    routes.add_post(
        f"{_V4}/callCenterInquiries/{{inquiryId:\\d+}}/replies",
        call_center_reply,
        name="call_center_reply",
    )
    routes.add_put(
        f"{_PRODUCTS}/vendor-items/{{vendorItemId:\\d+}}/quantities/{{quantity:\\d+}}",
        item_setter("maximumBuyCount", "quantity", "재고 변경 완료"),
        name="stock",
    )
    routes.add_put(
        f"{_PRODUCTS}/vendor-items/{{vendorItemId:\\d+}}/prices/{{price:\\d+}}",
        item_setter("salePrice", "price", "가격 변경 완료"),
        name="price",
    )
    return app


def make_app(rate: float, state: SimState) -> web.Application:
    """The simulator as `python -m markets.simulators coupang` serves it;
    `rate`: calls/s per vendor."""
    return coupang_app(rate=rate, state=state)
