"""Coupang's part in `lanes demo` (markets/simulators/demo.py): one vendor's budget below
the 10 calls/s the simulator blocks a vendor over, as its catalogue advises.

- low: single-order collection and product sync (a backfill);
- medium: one large vendor's order collection, by day and status (Coupang counts per
  vendor, so the sellers are its days);
- high: ships and inquiry answers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from lanes.policy import Lane
from markets.coupang.simulator import DEFAULT_KEYS
from markets.simulators.demo import DemoJob, DemoLoad, Lanes

__all__ = ["DEMO", "VENDOR"]

LIMIT = 8.0
VENDOR = next(iter(DEFAULT_KEYS.values()))[0]
# What the simulator holds (markets/coupang/simulator_data.py): ids the jobs may use.
# Shipment boxes 600000000..; acknowledged (INSTRUCT, shippable) where index % 5 == 0, a
# bundle of three items where index % 10 == 5: the demo ships the single-item INSTRUCT ones.
_BOXES = 120
_INQUIRIES = 40
_PRODUCTS = 20
_STATUSES = ("ACCEPT", "INSTRUCT", "DEPARTURE", "DELIVERING", "FINAL_DELIVERY")


def _config(base_url: str) -> str:
    """Every API in one budget per vendor, as Coupang counts them."""
    return (
        f'[markets.coupang]\ncatalogue = "coupang"\nbase_url = "{base_url}"\n\n'
        f'[markets.coupang.groups.vendor]\nrps = {LIMIT:g}\nscope = "seller"\n\n'
    )


def _warm_up(today: date) -> tuple[str, dict[str, Any]]:
    # Coupang requires the vendorId in the query too.
    day = today.isoformat()
    return VENDOR, {"vendorId": VENDOR, "inquiryStartAt": day, "inquiryEndAt": day}


def _plan(duration: float, sellers: int, now: datetime) -> Lanes:
    low = [
        DemoJob("collect_order", VENDOR, {"shipment_box_id": 600_000_000 + n % _BOXES},
                f"box-{n}") if n % 3 else
        DemoJob("get_product", VENDOR, {"seller_product_id": 1_000_000 + n % _PRODUCTS},
                f"product-{n}")
        for n in range(int(0.45 * LIMIT * duration))
    ]  # fmt: skip
    today = now.date()
    medium = [
        DemoJob("collect_orders", VENDOR,
                {"since": (today - timedelta(days=n // len(_STATUSES) % 30 + 1)).isoformat(),
                 "until": (today - timedelta(days=n // len(_STATUSES) % 30)).isoformat(),
                 "statuses": [_STATUSES[n % len(_STATUSES)]]},
                f"scheduled-{n}")
        for n in range(sellers)
    ]  # fmt: skip
    shippable = [n for n in range(1, _BOXES) if n % 10 == 0]
    count = max(2, int(0.25 * LIMIT * 0.2 * duration))
    high = [
        DemoJob("ship_order", VENDOR, {"invoices": [{
            "shipment_box_id": 600_000_000 + box, "order_id": 25_000_000_000 + box,
            "vendor_item_id": 70_000_000 + box % _PRODUCTS, "delivery_company_code": "CJGLS",
            "invoice_number": f"5000{box:06d}"}]}, f"ship-{box}")
        if n % 2 == 0 else
        DemoJob("answer_inquiry", VENDOR,
                {"inquiry_id": 3_000_000 + n % _INQUIRIES, "content": "Shipped today.",
                 "reply_by": "demo"}, f"answer-{n}")
        for n, box in zip(range(count), shippable * 2, strict=False)
    ]  # fmt: skip
    return low, medium, high


DEMO = DemoLoad(
    limit=LIMIT,
    market_rate=10.0,
    shown="Coupang (one vendor; the simulator blocks over 10/s)",
    route_lanes={
        "invoices": Lane.HIGH,
        "inquiry_reply": Lane.HIGH,
        "orders": Lane.MEDIUM,
        "order": Lane.LOW,
        "product": Lane.LOW,
    },
    config=_config,
    warm_up=_warm_up,
    plan=_plan,
)
