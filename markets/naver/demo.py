"""Naver's part in `lanes demo` (markets/simulators/demo.py): one app's budget, which the
demo pools over the APIs it calls.

- low: product sync (fewer than Coupang's: Naver's collection costs two calls per seller);
- medium: one collection per seller, all sharing the app's limit;
- high: ships and inquiry answers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from lanes.policy import Lane
from markets.simulators.demo import DemoJob, DemoLoad, Lanes

__all__ = ["DEMO"]

LIMIT = 10.0
# What the simulator holds (markets/naver/simulator_data.py): ids the jobs may use.
_ORDERS = 240
_INQUIRIES = 20
_PRODUCTS = 20
_ROUTE_LANES = {
    "dispatch": Lane.HIGH,
    "inquiry_answer": Lane.HIGH,
    "changed_orders": Lane.MEDIUM,
    "order_details": Lane.MEDIUM,
    "origin_product": Lane.LOW,
}


def _config(base_url: str) -> str:
    """One budget for the app, pooling the endpoints the demo calls."""
    pool = "".join(f'[markets.naver.endpoints.{name}]\ngroup = "app"\n\n' for name in _ROUTE_LANES)
    return (
        f'[markets.naver]\ncatalogue = "naver"\nbase_url = "{base_url}"\n\n'
        f"[markets.naver.groups.app]\nrps = {LIMIT:g}\n\n" + pool
    )


def _warm_up(today: date) -> tuple[str, dict[str, Any]]:
    return "naver-seller-1", {"page": 1}


def _plan(duration: float, sellers: int, now: datetime) -> Lanes:
    low = [
        DemoJob("get_product", "naver-seller-1", {"origin_product_no": 5_000_000 + n % _PRODUCTS},
                f"product-{n}")
        for n in range(int(0.3 * LIMIT * duration))
    ]  # fmt: skip
    since = (now - timedelta(days=1)).isoformat(timespec="seconds")
    medium = [
        DemoJob("collect_orders", f"naver-seller-{n + 1}", {"since": since}, "scheduled")
        for n in range(sellers)
    ]
    count = max(2, int(0.25 * LIMIT * 0.2 * duration))
    high = [
        DemoJob("ship_order", f"naver-seller-{n + 1}", {"dispatches": [{
            "product_order_id": f"2025{n % _ORDERS:012d}1", "delivery_company_code": "CJGLS",
            "tracking_number": f"6000{n:06d}"}]}, f"ship-{n}")
        if n % 2 == 0 else
        DemoJob("answer_inquiry", f"naver-seller-{n + 1}",
                {"inquiry_no": 9_000_000 + n % _INQUIRIES, "answer": "Shipped today."},
                f"answer-{n}")
        for n in range(count)
    ]  # fmt: skip
    return low, medium, high


DEMO = DemoLoad(
    limit=LIMIT,
    market_rate=10.0,
    shown="Naver (one app)",
    route_lanes=_ROUTE_LANES,
    config=_config,
    warm_up=_warm_up,
    plan=_plan,
)
