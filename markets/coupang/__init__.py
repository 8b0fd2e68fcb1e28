"""Coupang Open API (WING) as a built-in market: `catalogue = "coupang"`.

Signed per vendor with CEA HMAC; the message's seller is the vendorId.
"""

from __future__ import annotations

from markets.auth import Auth
from markets.coupang.auth import CoupangAuth
from markets.coupang.jobs import COUPANG_JOBS, KST, ORDERS
from markets.market import AuthSetup, Market, SimulatorEntry

__all__ = ["MARKET"]


def _auth(setup: AuthSetup) -> Auth:
    return CoupangAuth(setup.credentials)


MARKET = Market(
    name="coupang",
    auth_scheme="coupang_hmac",
    make_auth=_auth,
    jobs=COUPANG_JOBS,
    orders=ORDERS,
    time_zone=KST,
    product_id_field="seller_product_id",
    seller_path="vendorId",
    simulator=SimulatorEntry(
        "markets.coupang.simulator", rate=10.0, port=8081, demo="markets.coupang.demo"
    ),
    # Each vendor has its own keys; there are no application keys.
    seller_keys=lambda options: ("access_key", "secret_key"),
)
