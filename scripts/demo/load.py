"""The burst `lanes demo` plays, per market, timed over `--duration` seconds.

- low from the start: a backfill (Coupang: single-order collection; both: product sync);
- medium at 10 % of the duration: the scheduler's order collection for `--sellers`
  sellers (Naver: one job per seller, all sharing the app's limit; Coupang counts
  per vendor, so its collection is one large vendor's, by day and status);
- high from 40 % to 60 %: ships and inquiry answers arriving one by one.

Each lane's jobs call their own endpoints, so a request's route at the simulator
tells its lane (`ROUTE_LANES`) without the client having to say. The demo's TOML
puts each market's endpoints into one budget (Coupang counts every API per vendor;
for Naver the demo pools the APIs it calls).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lanes.policy import Lane
from markets.coupang.simulator import DEFAULT_KEYS
from markets.simulators import simulator_credentials
from scripts.tools.backfill import producer_id

__all__ = [
    "COUPANG_VENDOR",
    "LIMITS",
    "MARKETS",
    "MARKET_RATES",
    "ROUTE_LANES",
    "Planned",
    "config_text",
    "credential_variables",
    "plan_burst",
]

MARKETS = ("coupang", "naver")
# The budgets (requests/s) and what the simulators enforce: Coupang blocks a vendor over
# 10 calls in any second, so it is budgeted below that, as its catalogue advises.
LIMITS: Mapping[str, float] = {"coupang": 8.0, "naver": 10.0}
MARKET_RATES: Mapping[str, float] = {"coupang": 10.0, "naver": 10.0}
COUPANG_VENDOR = next(iter(DEFAULT_KEYS.values()))[0]
ROUTE_LANES: Mapping[str, Mapping[str, Lane]] = {
    "coupang": {
        "invoices": Lane.HIGH,
        "inquiry_reply": Lane.HIGH,
        "orders": Lane.MEDIUM,
        "order": Lane.LOW,
        "product": Lane.LOW,
    },
    "naver": {
        "dispatch": Lane.HIGH,
        "inquiry_answer": Lane.HIGH,
        "changed_orders": Lane.MEDIUM,
        "order_details": Lane.MEDIUM,
        "origin_product": Lane.LOW,
    },
}
# What the simulators hold (markets/<name>/simulator_data.py): ids the jobs may use.
# Shipment boxes 600000000..; acknowledged (INSTRUCT, shippable) where index % 5 == 0, a
# bundle of three items where index % 10 == 5: the demo ships the single-item INSTRUCT ones.
_COUPANG_BOXES = 120
_COUPANG_INQUIRIES = 40
_PRODUCTS = 20
_NAVER_ORDERS = 240
_NAVER_INQUIRIES = 20
_STATUSES = ("ACCEPT", "INSTRUCT", "DEPARTURE", "DELIVERING", "FINAL_DELIVERY")


@dataclass(frozen=True)
class Planned:
    """One message: when to send it (seconds from the start), where, and its body."""

    at: float
    market: str
    lane: Lane
    id: str
    body: str


def config_text(base_urls: Mapping[str, str]) -> str:
    """The demo's TOML: the built-in catalogues, one budget per market at `LIMITS`."""
    naver_pool = "".join(
        f'[markets.naver.endpoints.{name}]\ngroup = "app"\n\n' for name in ROUTE_LANES["naver"]
    )
    return (
        f'[markets.coupang]\ncatalogue = "coupang"\nbase_url = "{base_urls["coupang"]}"\n\n'
        f'[markets.coupang.groups.vendor]\nrps = {LIMITS["coupang"]:g}\nscope = "seller"\n\n'
        f'[markets.naver]\ncatalogue = "naver"\nbase_url = "{base_urls["naver"]}"\n\n'
        f"[markets.naver.groups.app]\nrps = {LIMITS['naver']:g}\n\n" + naver_pool
    )


def credential_variables(markets: Sequence[str] = MARKETS) -> dict[str, str]:
    """The simulators' test credentials as `LANES_CREDENTIALS__<MARKET>__<NAME>` variables."""
    return {
        f"LANES_CREDENTIALS__{market.upper()}__{name.upper()}": value
        for market in markets
        for name, value in simulator_credentials(market).items()
    }


def _body(kind: str, market: str, seller: str, payload: dict[str, Any], key: str) -> Planned:
    job_id = producer_id("demo", market, kind, seller, key)
    body = {"kind": kind, "market": market, "seller": seller, "payload": payload, "id": job_id}
    return Planned(0.0, market, Lane.LOW, job_id, json.dumps(body))


def _spread(jobs: list[Planned], lane: Lane, start: float, end: float) -> list[Planned]:
    """`jobs` in `lane`, sent evenly from `start` to `end` seconds."""
    step = (end - start) / max(len(jobs), 1)
    return [
        Planned(start + step * index, job.market, lane, job.id, job.body)
        for index, job in enumerate(jobs)
    ]


def _coupang(duration: float, sellers: int, now: datetime) -> list[Planned]:
    limit = LIMITS["coupang"]
    vendor = COUPANG_VENDOR
    low = [
        _body("collect_order", "coupang", vendor,
              {"shipment_box_id": 600_000_000 + n % _COUPANG_BOXES}, f"box-{n}") if n % 3 else
        _body("get_product", "coupang", vendor, {"seller_product_id": 1_000_000 + n % _PRODUCTS},
              f"product-{n}")
        for n in range(int(0.45 * limit * duration))
    ]  # fmt: skip
    today = now.date()
    medium = [
        _body("collect_orders", "coupang", vendor,
              {"since": (today - timedelta(days=n // len(_STATUSES) % 30 + 1)).isoformat(),
               "until": (today - timedelta(days=n // len(_STATUSES) % 30)).isoformat(),
               "statuses": [_STATUSES[n % len(_STATUSES)]]},
              f"scheduled-{n}")
        for n in range(sellers)
    ]  # fmt: skip
    shippable = [n for n in range(1, _COUPANG_BOXES) if n % 10 == 0]
    count = max(2, int(0.25 * limit * 0.2 * duration))
    high = [
        _body("ship_order", "coupang", vendor, {"invoices": [{
            "shipment_box_id": 600_000_000 + box, "order_id": 25_000_000_000 + box,
            "vendor_item_id": 70_000_000 + box % _PRODUCTS, "delivery_company_code": "CJGLS",
            "invoice_number": f"5000{box:06d}"}]}, f"ship-{box}")
        if n % 2 == 0 else
        _body("answer_inquiry", "coupang", vendor,
              {"inquiry_id": 3_000_000 + n % _COUPANG_INQUIRIES, "content": "Shipped today.",
               "reply_by": "demo"}, f"answer-{n}")
        for n, box in zip(range(count), shippable * 2, strict=False)
    ]  # fmt: skip
    return _phases(duration, low, medium, high)


def _naver(duration: float, sellers: int, now: datetime) -> list[Planned]:
    limit = LIMITS["naver"]
    low = [  # fewer than Coupang's: Naver's collection costs two calls per seller
        _body("get_product", "naver", "naver-seller-1",
              {"origin_product_no": 5_000_000 + n % _PRODUCTS}, f"product-{n}")
        for n in range(int(0.3 * limit * duration))
    ]  # fmt: skip
    since = (now - timedelta(days=1)).isoformat(timespec="seconds")
    medium = [
        _body("collect_orders", "naver", f"naver-seller-{n + 1}", {"since": since}, "scheduled")
        for n in range(sellers)
    ]
    count = max(2, int(0.25 * limit * 0.2 * duration))
    high = [
        _body("ship_order", "naver", f"naver-seller-{n + 1}", {"dispatches": [{
            "product_order_id": f"2025{n % _NAVER_ORDERS:012d}1", "delivery_company_code": "CJGLS",
            "tracking_number": f"6000{n:06d}"}]}, f"ship-{n}")
        if n % 2 == 0 else
        _body("answer_inquiry", "naver", f"naver-seller-{n + 1}",
              {"inquiry_no": 9_000_000 + n % _NAVER_INQUIRIES, "answer": "Shipped today."},
              f"answer-{n}")
        for n in range(count)
    ]  # fmt: skip
    return _phases(duration, low, medium, high)


def _phases(
    duration: float, low: list[Planned], medium: list[Planned], high: list[Planned]
) -> list[Planned]:
    return (
        _spread(low, Lane.LOW, 0.0, 0.02 * duration)
        + _spread(medium, Lane.MEDIUM, 0.1 * duration, 0.12 * duration)
        + _spread(high, Lane.HIGH, 0.4 * duration, 0.6 * duration)
    )


def plan_burst(duration: float, sellers: int, now: datetime | None = None) -> list[Planned]:
    """Every message of the burst, in the order of sending."""
    moment = now or datetime.now(UTC)
    planned = _coupang(duration, sellers, moment) + _naver(duration, sellers, moment)
    return sorted(planned, key=lambda job: job.at)
