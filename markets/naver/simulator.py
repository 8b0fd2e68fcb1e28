"""A local Naver Commerce API: OAuth2 with bcrypt-signed client credentials, and the
gateway's token bucket per application and API (rate R, burst 2R).

Tokens are per (app, type, account): `type=SELLER` needs an `account_id`, and
every call is counted under its token's account (`SimState.accounts`). As strict
as the market: times in `yyyy-MM-ddTHH:mm:ss.SSS+09:00`, at most 24 hours per
changed-orders query, 429 `GW.QUOTA_LIMIT` once the app's quota is spent.

Every answer carries `GNCP-GW-RateLimit-Replenish-Rate/-Burst-Capacity/-Remaining`;
an empty bucket answers 429 `GW.RATE_LIMIT`. Routes live under `/external`, so the
market's base_url is the served URL + "/external" (an API agency's app: `prefix="/partner"`,
base_url + "/partner").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
from aiohttp import web

from markets.naver.simulator_data import naver_product_orders, naver_products
from markets.simulators.sample import KST
from markets.simulators.state import Handler, SimState, simulator_app

__all__ = ["DEFAULT_APPS", "TEST_CREDENTIALS", "make_app", "naver_app"]

# client_id -> client_secret (a bcrypt salt)
DEFAULT_APPS: Mapping[str, str] = {"aaaabbbbcccc": "$2a$04$abcdefghijklmnopqrstuu"}
_TIMESTAMP_LIFETIME_MS = 5 * 60 * 1000
_SAME_TOKEN_WHILE = 30 * 60  # seconds left for which the same token comes back
_DAY = timedelta(hours=24)
_NAVER_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")
# The first app as lanes reads it (`LANES_CREDENTIALS__NAVER__<NAME>`).
_TEST_ID, _TEST_SECRET = next(iter(DEFAULT_APPS.items()))
TEST_CREDENTIALS: Mapping[str, str] = {"client_id": _TEST_ID, "client_secret": _TEST_SECRET}


def _gateway_error(status: int, code: str, message: str) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "timestamp": datetime.now(KST).isoformat(timespec="milliseconds"),
        "traceId": uuid.uuid4().hex,
    }
    return web.json_response(body, status=status)


def _ok(data: Any) -> web.Response:
    return web.json_response(
        {"timestamp": datetime.now(KST).isoformat(timespec="milliseconds"), "data": data}
    )


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Token:
    value: str
    client_id: str
    account: str  # "SELF" for the app's own token, else the seller's account_id
    expires: float  # time.monotonic()


class _Naver:
    def __init__(
        self, apps: Mapping[str, str], rate: float, rates: Mapping[str, float], token_ttl: float
    ) -> None:
        self.apps = dict(apps)
        self.rate = rate
        self.rates = dict(rates)
        self.token_ttl = token_ttl
        self.buckets: dict[tuple[str, str], _Bucket] = {}
        self.tokens: dict[str, _Token] = {}
        self.by_account: dict[tuple[str, str], _Token] = {}

    def take(self, app: str, endpoint: str) -> tuple[bool, dict[str, str]]:
        """Take one token from the (app, endpoint) bucket; the headers every answer carries."""
        rate = self.rates.get(endpoint, self.rate)
        burst = 2 * rate
        now = time.monotonic()
        bucket = self.buckets.setdefault((app, endpoint), _Bucket(burst, now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        admitted = bucket.tokens >= 1
        if admitted:
            bucket.tokens -= 1
        headers = {
            "GNCP-GW-RateLimit-Replenish-Rate": f"{rate:g}",
            "GNCP-GW-RateLimit-Burst-Capacity": f"{burst:g}",
            "GNCP-GW-RateLimit-Remaining": str(int(bucket.tokens)),
        }
        return admitted, headers

    def token_of(self, request: web.Request) -> _Token | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self.tokens.get(value) if scheme == "Bearer" else None
        if token is None or token.expires <= time.monotonic():
            return None
        return token

    def issue(self, client_id: str, account: str) -> _Token:
        current = self.by_account.get((client_id, account))
        now = time.monotonic()
        if current is not None and current.expires - now >= _SAME_TOKEN_WHILE:
            return current
        token = _Token(secrets.token_urlsafe(24), client_id, account, now + self.token_ttl)
        self.tokens[token.value] = token
        self.by_account[(client_id, account)] = token
        return token


def _check_sign(client_id: str, secret: str, timestamp: str, sign: str) -> bool:
    try:
        given = base64.b64decode(sign, validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = bcrypt.hashpw(f"{client_id}_{timestamp}".encode(), secret.encode())
    return secrets.compare_digest(given, expected)


def naver_app(
    *,
    apps: Mapping[str, str] = DEFAULT_APPS,
    rate: float = 2.0,
    rates: Mapping[str, float] | None = None,
    token_ttl: float = 10_800,
    orders: int = 240,
    start: datetime | None = None,
    days: int = 3,
    seed: int = 1,
    state: SimState | None = None,
    prefix: str = "/external",
) -> web.Application:
    """The simulator; `apps` maps client_id -> client_secret. `rate` is every API's R,
    `rates` overrides it by endpoint name (the catalogue's names, `token` included).
    Product orders change from `start` (default `days` days ago) over `days` days. Routes
    live under `prefix` (API agencies' apps use `/partner`)."""
    market = _Naver(apps, rate, rates or {}, token_ttl)
    begin = start or datetime.now(UTC) - timedelta(days=days)
    product_orders = naver_product_orders(orders, begin, days, seed)
    by_id = {item["productOrderId"]: item for item in product_orders}

    def apply_due() -> None:
        """Changes scheduled on the simulator's clock (a buyer cancels an hour later)."""
        for when, order, status in sim.due():
            if order in by_id:
                by_id[order].update(
                    productOrderStatus=status, changed=when.astimezone(KST), changedType="CLAIM"
                )

    # A claim on every product order whose last change is a request (a cancel)
    for item in product_orders:
        if item.get("changedType") == "CLAIM_REQUESTED":
            item.update(claimType="CANCEL", claimStatus="CANCEL_REQUEST")
    products = naver_products(20, seed)
    qnas: dict[int, dict[str, Any]] = {
        7_000_000 + index: {
            "questionId": 7_000_000 + index,
            "question": "사이즈가 어떻게 되나요?",
            "answer": None,
            "answered": False,
            "createDate": (begin + timedelta(hours=6 * index))
            .astimezone(KST)
            .isoformat(timespec="milliseconds"),
        }
        for index in range(12)
    }
    inquiries: dict[int, dict[str, Any]] = {
        9_000_000 + index: {"inquiryNo": 9_000_000 + index, "title": "배송 문의", "answered": False}
        for index in range(20)
    }
    sim = state or SimState()

    async def _through_gateway(
        request: web.Request, handler: Handler, name: str
    ) -> web.StreamResponse:
        if name == "token":
            form = await request.post()
            app_id: str | None = form.get("client_id")  # type: ignore[assignment]
            account = str(form.get("account_id") or "")
            sim.keys_seen[f"{app_id}/{account}" if account else str(app_id)] += 1
            if not isinstance(app_id, str) or app_id not in market.apps:
                return _gateway_error(401, "GW.AUTHN", "unknown client_id")
        else:
            held = market.token_of(request)
            if held is None:
                return _gateway_error(401, "GW.AUTHN", "인증 토큰이 유효하지 않습니다.")
            app_id = held.client_id
            sim.accounts[held.account] += 1
        if sim.faults.quota_left is not None:
            if sim.faults.quota_left <= 0:
                quota = _gateway_error(429, "GW.QUOTA_LIMIT", "할당량을 모두 사용했습니다.")
                quota.headers.update(
                    {
                        "GNCP-GW-Quota-Limit": "0",
                        "GNCP-GW-Quota-Remaining": "0",
                        "GNCP-GW-Quota-Period": sim.faults.quota_period,
                    }
                )
                return quota
            sim.faults.quota_left -= 1
        admitted, headers = market.take(app_id, name)
        if not admitted:
            response: web.StreamResponse = _gateway_error(
                429, "GW.RATE_LIMIT", "요청이 많아 일시적으로 사용할 수 없습니다."
            )
        else:
            if await sim.fails(name):
                response = _gateway_error(sim.faults.status, "GW.PROXY", "upstream failed")
            else:
                response = await handler(request)
        response.headers.update(headers)
        return response

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        fields = {
            key: str(form.get(key, ""))
            for key in (
                "client_id",
                "timestamp",
                "client_secret_sign",
                "grant_type",
                "type",
                "account_id",
            )
        }
        if fields["grant_type"] != "client_credentials" or fields["type"] not in ("SELF", "SELLER"):
            return _gateway_error(
                400, "BadRequest", "grant_type must be client_credentials and type SELF or SELLER"
            )
        try:
            stamp = int(fields["timestamp"])
        except ValueError:
            return _gateway_error(400, "BadRequest", "timestamp must be milliseconds")
        if abs(time.time() * 1000 - stamp) > _TIMESTAMP_LIFETIME_MS:
            return _gateway_error(400, "BadRequest", "timestamp is out of its 5-minute validity")
        secret = market.apps[fields["client_id"]]
        valid = await asyncio.to_thread(
            _check_sign,
            fields["client_id"],
            secret,
            fields["timestamp"],
            fields["client_secret_sign"],
        )
        if not valid:
            return _gateway_error(401, "GW.AUTHN", "client_secret_sign is invalid")
        if fields["type"] == "SELLER" and not fields["account_id"]:
            return _gateway_error(400, "BadRequest", "type=SELLER needs account_id")
        account = fields["account_id"] if fields["type"] == "SELLER" else "SELF"
        issued = market.issue(fields["client_id"], account)
        sim.tokens_issued += 1
        return web.json_response(
            {
                "access_token": issued.value,
                "expires_in": int(issued.expires - time.monotonic()),
                "token_type": "Bearer",
            }
        )

    def parse_time(text: str) -> datetime:
        if not _NAVER_TIME.match(text):
            raise ValueError(f"{text!r} is not yyyy-MM-ddTHH:mm:ss.SSS+09:00")
        return datetime.fromisoformat(text)

    async def changed(request: web.Request) -> web.Response:
        apply_due()
        query = request.query
        try:
            since = parse_time(query["lastChangedFrom"])
            until = parse_time(query["lastChangedTo"]) if "lastChangedTo" in query else since + _DAY
            limit = int(query.get("limitCount", "300"))
        except (KeyError, ValueError) as exc:
            return _gateway_error(400, "BadRequest", f"invalid or missing parameter: {exc}")
        if until - since > _DAY or until < since:
            return _gateway_error(
                400, "BadRequest", "lastChangedTo must be within 24 hours after lastChangedFrom"
            )
        if not 1 <= limit <= 300:
            return _gateway_error(400, "BadRequest", "limitCount must be 1..300")
        sequence = query.get("moreSequence", "")
        wanted_type = query.get("lastChangedType")
        matching = sorted(
            (
                (index, item)
                for index, item in enumerate(product_orders)
                # Both ends are included, as at Naver.
                if since <= item["changed"] <= until
                and (item["changed"] > since or f"{index:020d}" >= sequence)
                and (wanted_type is None or item.get("changedType", "PAYED") == wanted_type)
            ),
            key=lambda pair: (pair[1]["changed"], pair[0]),
        )
        page, rest = matching[:limit], matching[limit:]
        data: dict[str, Any] = {
            "count": len(page),
            "lastChangeStatuses": [
                {
                    "orderId": item["orderId"],
                    "productOrderId": item["productOrderId"],
                    "lastChangedType": item.get("changedType", "PAYED"),
                    "productOrderStatus": item["productOrderStatus"],
                    "lastChangedDate": item["changed"].isoformat(timespec="milliseconds"),
                    "paymentDate": item["order"]["paymentDate"],
                    "receiverAddressChanged": False,
                }
                for _index, item in page
            ],
        }
        if rest:
            index, item = rest[0]
            data["more"] = {
                "moreFrom": item["changed"].isoformat(timespec="milliseconds"),
                "moreSequence": f"{index:020d}",
            }
        # A product order not yet served changes now (the buyer confirms while we page).
        for _index, item in rest[-sim.faults.change_while_paging :] if rest else []:
            if sim.faults.change_while_paging <= 0:
                break
            sim.faults.change_while_paging -= 1
            item.update(changed=datetime.now(KST), productOrderStatus="PURCHASE_DECIDED")
        await sim.faults.page_served(len(page))
        return _ok(data)

    async def details(request: web.Request) -> web.Response:
        apply_due()
        body = await request.json()
        ids = body.get("productOrderIds")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 300:
            return _gateway_error(400, "BadRequest", "productOrderIds: 1 to 300 ids")
        found = [
            {
                "order": by_id[each]["order"],
                "productOrder": {
                    **by_id[each]["productOrder"],
                    "productOrderStatus": by_id[each]["productOrderStatus"],
                    "placeOrderStatus": by_id[each].get("placeOrderStatus", "NOT_YET"),
                },
                "delivery": by_id[each].get("delivery"),
            }
            for each in ids
            if each in by_id
        ]
        return _ok(found)

    async def order_ids(request: web.Request) -> web.Response:
        wanted = request.match_info["orderId"]
        return _ok([item["productOrderId"] for item in product_orders if item["orderId"] == wanted])

    async def confirm(request: web.Request) -> web.Response:
        """Place orders (발주 확인), up to 30 product orders: PAYED ones only."""
        ids = (await request.json()).get("productOrderIds")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 30:
            return _gateway_error(400, "BadRequest", "productOrderIds: 1 to 30 ids")
        confirmed, failed = [], []
        for each in ids:
            found = by_id.get(each)
            if found is not None and found["productOrderStatus"] == "PAYED":
                if found.get("placeOrderStatus") != "OK":
                    sim.effects[f"confirm:{each}"] += 1
                found["placeOrderStatus"] = "OK"
                confirmed.append({"productOrderId": each, "isReceiverAddressChanged": False})
            else:
                code = "NOT_FOUND" if found is None else "INVALID_STATUS"
                failed.append({"productOrderId": each, "code": code, "message": code})
        return _ok({"successProductOrderInfos": confirmed, "failProductOrderInfos": failed})

    async def dispatch(request: web.Request) -> web.Response:
        body = await request.json()
        items = body.get("dispatchProductOrders")
        if not isinstance(items, list) or not 1 <= len(items) <= 30:
            return _gateway_error(400, "BadRequest", "dispatchProductOrders: 1 to 30 items")
        shipped, failed = [], []
        for item in items:
            sim.items_posted[str(item.get("productOrderId"))] += 1
            found = by_id.get(item.get("productOrderId"))
            if sim.faults.fails_once(str(item.get("productOrderId"))):
                failed.append(
                    {
                        "productOrderId": item.get("productOrderId"),
                        "code": "TEMPORARY_ERROR",
                        "message": "일시적인 오류입니다. 다시 시도해 주세요.",
                    }
                )
            elif (
                found is not None
                and found["productOrderStatus"] == "PAYED"
                and item.get("trackingNumber")
            ):
                sim.effects[f"dispatch:{item['productOrderId']}"] += 1
                found["productOrderStatus"] = "DELIVERING"
                found["delivery"] = {
                    "deliveryMethod": item.get("deliveryMethod"),
                    "deliveryCompany": item.get("deliveryCompanyCode"),
                    "trackingNumber": item["trackingNumber"],
                    "sendDate": item.get("dispatchDate"),
                }
                shipped.append(item["productOrderId"])
            else:
                failed.append(
                    {
                        "productOrderId": item.get("productOrderId"),
                        "code": "INVALID_STATUS",
                        "message": "발송처리할 수 없는 상태입니다.",
                    }
                )
        return _ok({"successProductOrderIds": shipped, "failProductOrderInfos": failed})

    async def list_inquiries(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        size = int(request.query.get("size", "10"))
        answered = request.query.get("answered")
        matching = [
            item
            for item in inquiries.values()
            if answered is None or item["answered"] == (answered == "true")
        ]
        content = matching[(page - 1) * size : page * size]
        return web.json_response(
            {"content": content, "totalElements": len(matching), "page": page, "size": size}
        )

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        found = inquiries.get(int(request.match_info["inquiryNo"]))
        if found is None:
            return _gateway_error(404, "NotFound", "inquiry not found")
        if not body.get("answerComment"):
            return _gateway_error(400, "BadRequest", "answerComment is required")
        # Naver takes every answer as another comment: nothing stops a second one.
        sim.effects[f"answer:{found['inquiryNo']}"] += 1
        found.update(answered=True, answerContent=body["answerComment"])
        return _ok({"inquiryCommentNo": found["inquiryNo"] * 10})

    async def list_qnas(request: web.Request) -> web.Response:
        query = request.query
        try:
            since, until = parse_time(query["fromDate"]), parse_time(query["toDate"])
            page, size = int(query.get("page", "1")), int(query.get("size", "100"))
        except (KeyError, ValueError) as exc:
            return _gateway_error(400, "BadRequest", f"invalid or missing parameter: {exc}")
        answered = query.get("answered")
        matching = [
            qna
            for qna in qnas.values()
            if since <= datetime.fromisoformat(qna["createDate"]) <= until
            and (answered is None or str(qna["answered"]).lower() == answered)
        ]
        contents = matching[(page - 1) * size : page * size]
        pages = max(1, -(-len(matching) // size))
        return web.json_response(
            {
                "contents": contents,
                "page": page,
                "size": size,
                "totalElements": len(matching),
                "totalPages": pages,
            }
        )

    async def answer_qna(request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("commentContent"):
            return _gateway_error(400, "BadRequest", "commentContent is required")
        question = int(request.match_info["questionId"])
        if question in qnas:
            sim.effects[f"qna:{question}"] += 1
            qnas[question].update(answer=body["commentContent"], answered=True)
        return web.json_response({"questionId": question})

    def claim_action(kind: str, target: str) -> Handler:
        """Approve or reject a product order's claim of `kind`; it then is `target`."""

        async def act(request: web.Request) -> web.Response:
            wanted = request.match_info["productOrderId"]
            found = by_id.get(wanted)
            if found is None:
                return _gateway_error(400, "BadRequest", "productOrderId not found")
            if found.get("claimType") != kind:
                return _gateway_error(400, "BadRequest", f"no {kind} claim on this product order")
            if found.get("claimStatus") == target:
                return _gateway_error(
                    400, "BadRequest", "이미 처리된 클레임입니다 (already processed)"
                )
            if target == "RETURN_REJECT" and not (await request.json()).get("rejectReturnReason"):
                return _gateway_error(400, "BadRequest", "rejectReturnReason is required")
            sim.effects[f"claim:{wanted}:{target}"] += 1
            found["claimStatus"] = target
            if target == "CANCEL_DONE":
                found["productOrderStatus"] = "CANCELED"
            elif target == "RETURN_DONE":
                found["productOrderStatus"] = "RETURNED"
            return _ok({"productOrderId": wanted})

        return act

    async def origin_product(request: web.Request) -> web.Response:
        found = products.get(int(request.match_info["originProductNo"]))
        if found is None:
            return _gateway_error(404, "NotFound", "product not found")
        if request.method == "GET":
            return web.json_response(found)
        body = await request.json()
        if not isinstance(body.get("originProduct"), dict):
            return _gateway_error(400, "BadRequest", "originProduct is required")
        found["originProduct"] = body["originProduct"]
        return web.json_response({"originProductNo": int(request.match_info["originProductNo"])})

    async def channel_product(request: web.Request) -> web.Response:
        wanted = int(request.match_info["channelProductNo"])
        for number, found in products.items():
            if found["smartstoreChannelProduct"]["channelProductNo"] == wanted:
                if request.method == "GET":
                    return web.json_response({**found, "originProductNo": number})
                return web.json_response({"channelProductNo": wanted})
        return _gateway_error(404, "NotFound", "product not found")

    app = simulator_app(sim, _through_gateway)
    routes = app.router
    order_base = f"{prefix}/v1/pay-order/seller"
    routes.add_post(f"{prefix}/v1/oauth2/token", token, name="token")
    routes.add_get(
        f"{order_base}/product-orders/last-changed-statuses", changed, name="changed_orders"
    )
    routes.add_post(f"{order_base}/product-orders/query", details, name="order_details")
    routes.add_get(
        f"{order_base}/orders/{{orderId}}/product-order-ids", order_ids, name="order_product_ids"
    )
    routes.add_post(f"{order_base}/product-orders/dispatch", dispatch, name="dispatch")
    routes.add_post(f"{order_base}/product-orders/confirm", confirm, name="confirm")
    claim = f"{order_base}/product-orders/{{productOrderId:\\d+}}/claim"
    for action, kind, target in (
        ("cancel/approve", "CANCEL", "CANCEL_DONE"),
        ("return/approve", "RETURN", "RETURN_DONE"),
        ("return/reject", "RETURN", "RETURN_REJECT"),
    ):
        name = "claim_" + action.replace("/", "_")
        routes.add_post(f"{claim}/{action}", claim_action(kind, target), name=name)
    routes.add_get(f"{prefix}/v1/pay-user/inquiries", list_inquiries, name="inquiries")
    routes.add_post(
        f"{prefix}/v1/pay-merchant/inquiries/{{inquiryNo:\\d+}}/answer",
        answer,
        name="inquiry_answer",
    )
    routes.add_get(f"{prefix}/v1/contents/qnas", list_qnas, name="qnas")
    routes.add_put(f"{prefix}/v1/contents/qnas/{{questionId:\\d+}}", answer_qna, name="qna_answer")
    origin = f"{prefix}/v2/products/origin-products/{{originProductNo:\\d+}}"
    routes.add_get(origin, origin_product, name="origin_product")
    routes.add_put(origin, origin_product, name="origin_product_update")
    channel = f"{prefix}/v2/products/channel-products/{{channelProductNo:\\d+}}"
    routes.add_get(channel, channel_product, name="channel_product")
    routes.add_put(channel, channel_product, name="channel_product_update")
    return app


def make_app(rate: float, state: SimState) -> web.Application:
    """The simulator as `python -m markets.simulators naver` serves it;
    `rate`: the token refill per second (R)."""
    return naver_app(rate=rate, state=state)
