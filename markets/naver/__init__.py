"""Naver Commerce API as a built-in market: `catalogue = "naver"`.

OAuth2 tokens per seller account (`options.token_type = "SELLER"`) or for the
app itself (`"SELF"`); the token call takes its own endpoint's budget.
"""

from __future__ import annotations

from typing import Any

from lanes.policy import Lane
from markets.auth import Auth
from markets.client import Call
from markets.market import AuthSetup, Market, SimulatorEntry
from markets.naver.auth import NaverAuth, NaverTokens
from markets.naver.jobs import KST, NAVER_JOBS, ORDERS

__all__ = ["MARKET"]


def _auth(setup: AuthSetup) -> Auth:
    token_call = setup.config.options.get("token_endpoint", "token")

    async def fetch(form: dict[str, str], lane: Lane, deadline: float | None) -> Any:
        return await setup.client.send_unsigned(
            Call(token_call, form=form), lane, deadline=deadline
        )

    tokens = NaverTokens(
        setup.name,
        setup.redis,
        setup.credentials,
        fetch,
        token_type=setup.config.options.get("token_type", "SELF"),
    )
    return NaverAuth(tokens)


MARKET = Market(
    name="naver",
    auth_scheme="naver_oauth",
    make_auth=_auth,
    jobs=NAVER_JOBS,
    orders=ORDERS,
    time_zone=KST,
    product_id_field="origin_product_no",
    simulator=SimulatorEntry(
        "markets.naver.simulator",
        rate=2.0,
        base_path="/external",
        port=8082,
        demo="markets.naver.demo",
    ),
    # The application's keys; a solution app's (token_type SELLER) seller is named by
    # its own account_id.
    app_keys=("client_id", "client_secret"),
    seller_keys=lambda options: ("account_id",) if options.get("token_type") == "SELLER" else (),
)
