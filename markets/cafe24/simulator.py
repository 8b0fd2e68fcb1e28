"""A local Cafe24 Admin API, as strict as the market, for many malls at once.

Each mall lives under `/{mall_id}/api/v2` (the real host is `{mall_id}.cafe24api.com`),
so the market's base_url is the served URL + "/{seller}/api/v2"; a mall it does not know
answers 404. Per mall:

- OAuth: `POST /oauth/token` with HTTP Basic `client_id:client_secret`,
  `grant_type=refresh_token`: a new access token (`access_ttl` seconds) and a new refresh
  token (`refresh_ttl`); the refresh token used stops working at once (400
  `invalid_grant`), as does an expired one. `install(mall)` is the seller installing the app
  again (a new refresh token, the old ones void).
- The bucket per mall and API (endpoint): `bucket` calls, leaking `leak` per second; every
  answer carries `X-Api-Call-Limit: used/size`; a full bucket answers 429. A mall-wide
  usage limit (`usage_limit` calls per `usage_period` seconds of the simulator's clock,
  None: unlimited) adds `X-Cafe24-Call-Usage` (percent used) and `X-Cafe24-Call-Remain`
  (calls left), and answers 429 once spent; it drains when its period ends.
- Board 1 (the Q&A board) holds articles 1-10 per mall; a comment needs `content` and
  `writer` (422 without), an unknown article is 404.
- Dates `YYYY-MM-DDTHH:MM:SS+09:00` only; an order search longer than `max_span`, ending
  before it starts, a `limit` past 1000 or an `offset` past 15000 answers 422.

The clock of tokens and orders is `SimState.now()` (`advance` expires tokens in no time).
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from markets.simulators.sample import KST
from markets.simulators.state import Handler, SimState, simulator_app

__all__ = [
    "DEFAULT_CAFE24_APP",
    "DEFAULT_MALLS",
    "TEST_CREDENTIALS",
    "Cafe24Malls",
    "cafe24_app",
    "cafe24_malls",
    "make_app",
]

# client_id -> client_secret
DEFAULT_CAFE24_APP: Mapping[str, str] = {"cafe24-client-id": "cafe24-client-secret"}
# mall_id -> the refresh token its install handed out
DEFAULT_MALLS: Mapping[str, str] = {
    "mallone": "refresh-mallone-0",
    "malltwo": "refresh-malltwo-0",
    "mallthree": "refresh-mallthree-0",
}
# The app and each mall's refresh token as lanes reads them (`LANES_CREDENTIALS__CAFE24__<NAME>`).
_TEST_ID, _TEST_SECRET = next(iter(DEFAULT_CAFE24_APP.items()))
TEST_CREDENTIALS: Mapping[str, str] = {
    "client_id": _TEST_ID,
    "client_secret": _TEST_SECRET,
    **{f"{mall}_refresh_token": token for mall, token in DEFAULT_MALLS.items()},
}
MAX_LIMIT = 1000
MAX_OFFSET = 15000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+09:00$")
_STATUSES = ("N00", "N10", "N20", "N30", "N40", "C40", "R40")


def _error(status: int, message: str, code: Any = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code if code is not None else status, "message": message}},
        status=status,
    )


def _stamp(moment: datetime) -> str:
    return moment.astimezone(KST).isoformat(timespec="seconds")


@dataclass
class _Bucket:
    level: float
    at: float


@dataclass
class _Mall:
    refresh: str
    refresh_expires: datetime
    orders: list[dict[str, Any]]
    products: dict[int, dict[str, Any]]
    shipments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (board_no, article_no) -> its comments: board 1 (the Q&A board) holds articles 1-10
    comments: dict[tuple[int, int], list[dict[str, Any]]] = field(
        default_factory=lambda: {(1, article): [] for article in range(1, 11)}
    )
    used: int = 0  # calls counted against the usage limit in the period from `usage_from`
    usage_from: datetime | None = None


class Cafe24Malls:
    """The malls, their tokens and buckets; tests read and change it."""

    def __init__(
        self,
        sim: SimState,
        apps: Mapping[str, str],
        malls: Mapping[str, str],
        *,
        access_ttl: float,
        refresh_ttl: float,
        bucket: int,
        leak: float,
        usage_limit: int | None,
        usage_period: float,
        orders: int,
        begin: datetime,
        days: int,
        seed: int,
    ) -> None:
        self.sim = sim
        self.apps = dict(apps)
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.bucket = bucket
        self.leak = leak
        self.usage_limit = usage_limit
        self.usage_period = timedelta(seconds=usage_period)
        self.buckets: dict[tuple[str, str], _Bucket] = {}
        self.access: dict[str, tuple[str, datetime]] = {}  # token -> (mall, expires)
        self.refused_refresh = 0  # refresh tokens refused (reused, expired, unknown)
        self.refused_calls = 0  # calls answered 429 (a full bucket or the usage limit)
        self.malls = {
            mall: _Mall(
                refresh,
                sim.now() + timedelta(seconds=refresh_ttl),
                _orders(mall, orders, begin, days, seed + index),
                _products(mall, 20),
            )
            for index, (mall, refresh) in enumerate(malls.items())
        }

    def install(self, mall: str) -> str:
        """The seller installs the app again: a new refresh token, every older one void."""
        token = f"refresh-{mall}-{secrets.token_hex(6)}"
        self.malls[mall].refresh = token
        self.malls[mall].refresh_expires = self.sim.now() + timedelta(seconds=self.refresh_ttl)
        return token

    def refresh_token(self, mall: str) -> str:
        """The one refresh token of `mall` Cafe24 would accept now."""
        return self.malls[mall].refresh

    def take(self, mall: str, endpoint: str) -> tuple[bool, dict[str, str]]:
        """One call into the (mall, endpoint) bucket and the mall's usage; the headers."""
        now = time.monotonic()
        bucket = self.buckets.setdefault((mall, endpoint), _Bucket(0.0, now))
        bucket.level = max(0.0, bucket.level - (now - bucket.at) * self.leak)
        bucket.at = now
        state = self.malls[mall]
        moment = self.sim.now()
        if state.usage_from is None or moment - state.usage_from >= self.usage_period:
            state.used, state.usage_from = 0, moment
        spent = self.usage_limit is not None and state.used >= self.usage_limit
        admitted = not spent and bucket.level + 1 <= self.bucket
        if admitted:
            bucket.level += 1
            state.used += 1
        else:
            self.refused_calls += 1
        headers = {"X-Api-Call-Limit": f"{math.ceil(bucket.level)}/{self.bucket}"}
        if self.usage_limit is not None:
            share = 100 * state.used / self.usage_limit
            headers["X-Cafe24-Call-Usage"] = f"{share:.2f}"
            headers["X-Cafe24-Call-Remain"] = str(max(0, self.usage_limit - state.used))
        return admitted, headers


MALLS = web.AppKey("cafe24_malls", Cafe24Malls)


def cafe24_malls(app: web.Application) -> Cafe24Malls:
    """The malls of a Cafe24 simulator app (tokens, buckets, data)."""
    return app[MALLS]


def _orders(mall: str, count: int, begin: datetime, days: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    span = days * 86_400
    moments = sorted(begin + timedelta(seconds=rng.uniform(0, span)) for _ in range(count))
    orders = []
    for index, moment in enumerate(moments, start=1):
        local = moment.astimezone(KST)
        order_id = f"{local:%Y%m%d}-{index:07d}"
        items = [
            {
                "order_item_code": f"{order_id}-{line:02d}",
                "product_no": rng.randint(1, 20),
                "quantity": rng.randint(1, 3),
                "order_status": rng.choice(_STATUSES),
            }
            for line in range(1, rng.randint(1, 3) + 1)
        ]
        orders.append(
            {
                "shop_no": 1,
                "mall_id": mall,
                "order_id": order_id,
                "order_date": _stamp(moment),
                "moment": moment.replace(microsecond=0),
                "items": items,
            }
        )
    return orders


def _products(mall: str, count: int) -> dict[int, dict[str, Any]]:
    return {
        number: {
            "shop_no": 1,
            "product_no": number,
            "product_code": f"P{number:07d}",
            "product_name": f"{mall} 상품 {number}",
            "price": f"{10000 + 500 * number}.00",
            "variants": {
                f"P{number:07d}000{letter}": {
                    "variant_code": f"P{number:07d}000{letter}",
                    "quantity": 10,
                }
                for letter in "AB"
            },
        }
        for number in range(1, count + 1)
    }


def _path_numbers(request: web.Request, *names: str) -> tuple[int, ...] | None:
    """The path's numbers `names`; None where one is not a number (the route then 404s)."""
    try:
        return tuple(int(request.match_info[name]) for name in names)
    except ValueError:
        return None


def _date(value: str | None, name: str) -> datetime | web.Response:
    if value is None or not _DATE.match(value):
        return _error(422, f"{name} must be YYYY-MM-DDTHH:MM:SS+09:00, not {value!r}")
    return datetime.fromisoformat(value)


def _public(order: dict[str, Any], items: bool) -> dict[str, Any]:
    shown = {key: value for key, value in order.items() if key not in ("moment", "items")}
    if items:
        shown["items"] = [dict(item) for item in order["items"]]
    return shown


def cafe24_app(
    *,
    apps: Mapping[str, str] = DEFAULT_CAFE24_APP,
    malls: Mapping[str, str] = DEFAULT_MALLS,
    access_ttl: float = 7200,
    refresh_ttl: float = 14 * 86_400,
    bucket: int = 40,
    leak: float = 2.0,
    usage_limit: int | None = None,
    usage_period: float = 60.0,
    max_span: timedelta = timedelta(days=30),
    orders: int = 120,
    start: datetime | None = None,
    days: int = 60,
    seed: int = 1,
    state: SimState | None = None,
) -> web.Application:
    """The simulator. Each mall has `orders` orders placed over `days` days from `start`
    (default `days` days ago) and 20 products of two variants each."""
    sim = state or SimState()
    begin = start or datetime.now(UTC) - timedelta(days=days)
    market = Cafe24Malls(
        sim,
        apps,
        malls,
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        bucket=bucket,
        leak=leak,
        usage_limit=usage_limit,
        usage_period=usage_period,
        orders=orders,
        begin=begin,
        days=days,
        seed=seed,
    )

    def mall_of(request: web.Request) -> _Mall:
        return market.malls[request.match_info["mall"]]

    async def _through_gateway(
        request: web.Request, handler: Handler, name: str
    ) -> web.StreamResponse:
        mall = request.match_info.get("mall", "")
        if mall not in market.malls:
            return _error(404, f"mall {mall!r} not found")
        if name == "token":
            return await handler(request)
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        held = market.access.get(value) if scheme == "Bearer" else None
        if held is None or held[0] != mall or held[1] <= sim.now():
            return _error(401, "access_token time expired. (invalid_token)")
        sim.accounts[mall] += 1
        admitted, headers = market.take(mall, name)
        if not admitted:
            response: web.StreamResponse = _error(429, "Too Many Requests")
        else:
            if await sim.fails(name):
                response = _error(sim.faults.status, "Service Unavailable")
            else:
                response = await handler(request)
        response.headers.update(headers)
        return response

    async def token(request: web.Request) -> web.Response:
        mall_id = request.match_info["mall"]
        state = market.malls[mall_id]
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, ValueError):
            client_id, secret = "", ""
        sim.keys_seen[f"{client_id}/{mall_id}"] += 1
        if scheme != "Basic" or market.apps.get(client_id) != secret:
            return web.json_response(
                {"error": "invalid_client", "error_description": "client authentication failed"},
                status=401,
            )
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "refresh_token only"},
                status=400,
            )
        now = sim.now()
        if form.get("refresh_token") != state.refresh or state.refresh_expires <= now:
            market.refused_refresh += 1
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Validation error: refresh_token"},
                status=400,
            )
        # Rotation: the token just used is void from here on.
        state.refresh = f"refresh-{mall_id}-{secrets.token_hex(6)}"
        state.refresh_expires = now + timedelta(seconds=market.refresh_ttl)
        access = secrets.token_urlsafe(18)
        expires = now + timedelta(seconds=market.access_ttl)
        market.access[access] = (mall_id, expires)
        sim.tokens_issued += 1
        local = "%Y-%m-%dT%H:%M:%S.000"
        return web.json_response(
            {
                "access_token": access,
                "expires_at": expires.astimezone(KST).strftime(local),
                "refresh_token": state.refresh,
                "refresh_token_expires_at": state.refresh_expires.astimezone(KST).strftime(local),
                "client_id": client_id,
                "mall_id": mall_id,
                "user_id": mall_id,
                "scopes": ["mall.read_order", "mall.write_order", "mall.read_product"],
                "issued_at": now.astimezone(KST).strftime(local),
            }
        )

    def search(request: web.Request) -> list[dict[str, Any]] | web.Response:
        low = _date(request.query.get("start_date"), "start_date")
        if isinstance(low, web.Response):
            return low
        high = _date(request.query.get("end_date"), "end_date")
        if isinstance(high, web.Response):
            return high
        if high < low:
            return _error(422, "end_date is before start_date")
        if high - low > max_span:
            return _error(422, f"the search may span at most {max_span.days} days")
        return [order for order in mall_of(request).orders if low <= order["moment"] <= high]

    async def orders_count(request: web.Request) -> web.Response:
        found = search(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response({"count": len(found)})

    async def list_orders(request: web.Request) -> web.Response:
        found = search(request)
        if isinstance(found, web.Response):
            return found
        try:
            limit = int(request.query.get("limit", "10"))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return _error(422, "limit and offset must be numbers")
        if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
            return _error(422, f"limit 1..{MAX_LIMIT}, offset 0..{MAX_OFFSET}")
        items = request.query.get("embed") == "items"
        page = [_public(order, items) for order in found[offset : offset + limit]]
        return web.json_response({"orders": page})

    def find_order(request: web.Request) -> dict[str, Any] | None:
        wanted = request.match_info["order_id"]
        return next((o for o in mall_of(request).orders if o["order_id"] == wanted), None)

    async def one_order(request: web.Request) -> web.Response:
        order = find_order(request)
        if order is None:
            return _error(404, "order not found")
        return web.json_response({"order": _public(order, request.query.get("embed") == "items")})

    async def add_shipment(request: web.Request) -> web.Response:
        order = find_order(request)
        if order is None:
            return _error(404, "order not found")
        body = await request.json()
        wanted = (body or {}).get("request") or {}
        codes = wanted.get("order_item_code")
        if not wanted.get("tracking_no") or not wanted.get("shipping_company_code"):
            return _error(422, "tracking_no and shipping_company_code are required")
        known = {item["order_item_code"] for item in order["items"]}
        if not isinstance(codes, list) or not codes or not set(codes) <= known:
            return _error(422, "order_item_code must list items of this order")
        shipments = mall_of(request).shipments.setdefault(order["order_id"], [])
        taken = {code for each in shipments for code in each["order_item_code"]}
        if taken & set(codes):
            return _error(422, "an order item is already in a shipment")
        shipment = {
            "shop_no": 1,
            "shipping_code": f"D{len(shipments) + 1:05d}",
            "order_item_code": list(codes),
            "tracking_no": wanted["tracking_no"],
            "shipping_company_code": wanted["shipping_company_code"],
            "status": wanted.get("status", "shipping"),
        }
        shipments.append(shipment)
        for code in codes:
            sim.items_posted[code] += 1
        sim.effects[f"shipment:{order['order_id']}"] += 1
        return web.json_response({"shipment": shipment}, status=201)

    async def list_shipments(request: web.Request) -> web.Response:
        order = find_order(request)
        if order is None:
            return _error(404, "order not found")
        return web.json_response(
            {"shipments": mall_of(request).shipments.get(order["order_id"], [])}
        )

    def find_product(request: web.Request) -> dict[str, Any] | None:
        number = _path_numbers(request, "product_no")
        return None if number is None else mall_of(request).products.get(number[0])

    async def product(request: web.Request) -> web.Response:
        found = find_product(request)
        if found is None:
            return _error(404, "product not found")
        return web.json_response(
            {"product": {key: value for key, value in found.items() if key != "variants"}}
        )

    async def variants(request: web.Request) -> web.Response:
        found = find_product(request)
        if found is None:
            return _error(404, "product not found")
        return web.json_response({"variants": list(found["variants"].values())})

    async def inventory(request: web.Request) -> web.Response:
        found = find_product(request)
        variant = found["variants"].get(request.match_info["variant_code"]) if found else None
        if variant is None:
            return _error(404, "variant not found")
        quantity = ((await request.json()) or {}).get("request", {}).get("quantity")
        if not isinstance(quantity, int) or quantity < 0:
            return _error(422, "request.quantity must be a whole number, 0 or more")
        variant["quantity"] = quantity
        sim.effects[f"inventory:{variant['variant_code']}"] += 1
        return web.json_response(
            {"inventory": {"variant_code": variant["variant_code"], "quantity": quantity}}
        )

    def article_comments(request: web.Request) -> list[dict[str, Any]] | None:
        key = _path_numbers(request, "board_no", "article_no")
        return None if key is None else mall_of(request).comments.get((key[0], key[1]))

    async def add_comment(request: web.Request) -> web.Response:
        comments = article_comments(request)
        if comments is None:
            return _error(404, "article not found")
        wanted = ((await request.json()) or {}).get("request") or {}
        if not wanted.get("content") or not wanted.get("writer"):
            return _error(422, "request.content and request.writer are required")
        comment = {
            "shop_no": 1,
            "comment_no": len(comments) + 1,
            "board_no": int(request.match_info["board_no"]),
            "article_no": int(request.match_info["article_no"]),
            "content": wanted["content"],
            "writer": wanted["writer"],
            "created_date": _stamp(sim.now()),
        }
        comments.append(comment)
        sim.effects[f"comment:{comment['board_no']}:{comment['article_no']}"] += 1
        return web.json_response({"comment": comment}, status=201)

    async def list_comments(request: web.Request) -> web.Response:
        comments = article_comments(request)
        if comments is None:
            return _error(404, "article not found")
        return web.json_response({"comments": comments})

    app = simulator_app(sim, _through_gateway)
    app[MALLS] = market
    base = "/{mall}/api/v2"
    app.router.add_post(f"{base}/oauth/token", token, name="token")
    app.router.add_get(f"{base}/admin/orders", list_orders, name="orders")
    app.router.add_get(f"{base}/admin/orders/count", orders_count, name="orders_count")
    app.router.add_get(f"{base}/admin/orders/{{order_id}}", one_order, name="order")
    app.router.add_post(
        f"{base}/admin/orders/{{order_id}}/shipments", add_shipment, name="shipments"
    )
    app.router.add_get(
        f"{base}/admin/orders/{{order_id}}/shipments", list_shipments, name="order_shipments"
    )
    app.router.add_get(f"{base}/admin/products/{{product_no}}", product, name="product")
    app.router.add_get(f"{base}/admin/products/{{product_no}}/variants", variants, name="variants")
    app.router.add_put(
        f"{base}/admin/products/{{product_no}}/variants/{{variant_code}}/inventories",
        inventory,
        name="inventory",
    )
    comments = f"{base}/admin/boards/{{board_no}}/articles/{{article_no}}/comments"
    app.router.add_post(comments, add_comment, name="add_comment")
    app.router.add_get(comments, list_comments, name="comments")
    return app


def make_app(rate: float, state: SimState) -> web.Application:
    """The simulator as `python -m markets.simulators cafe24` serves it;
    `rate`: the bucket's leak per second, per mall and API."""
    return cafe24_app(leak=rate, state=state)
