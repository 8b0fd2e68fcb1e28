"""Cafe24 Admin API as a built-in market: `catalogue = "cafe24"`.

One app serves many malls: each mall (the message's seller, its Cafe24 mall id) installed
the app and has its own host, access token and rotating refresh token; every budget is
counted per mall. The token call goes to the mall's own host in its own budget.
"""

from __future__ import annotations

from typing import Any

from lanes.policy import Lane
from markets.auth import Auth
from markets.cafe24_auth import Cafe24Auth, Cafe24Tokens
from markets.cafe24_jobs import CAFE24_JOBS, ORDERS
from markets.cafe24_refresh_store import RefreshStore, refresh_store
from markets.client import Call
from markets.market import AuthSetup, Market

__all__ = ["MARKET"]


def _auth(setup: AuthSetup) -> Auth:
    options = setup.config.options
    token_call = options.get("token_endpoint", "token")

    async def fetch(mall: str, form: dict[str, str], headers: dict[str, str], lane: Lane) -> Any:
        # No deadline: a refresh is never cut short by the job that started it.
        return await setup.client.send_unsigned(
            Call(token_call, form=form, headers=headers), lane, seller=mall
        )

    def store() -> RefreshStore:
        return refresh_store(options.get("credentials", "env"), setup.name)

    tokens = Cafe24Tokens(setup.name, setup.redis, setup.credentials, store, fetch)
    return Cafe24Auth(tokens, options.get("api_version"))


MARKET = Market(
    name="cafe24",
    auth_scheme="cafe24_oauth",
    make_auth=_auth,
    jobs=CAFE24_JOBS,
    orders=ORDERS,
    # The app's own keys; each mall's refresh token is its own (written back on rotation).
    app_keys=("client_id", "client_secret"),
    seller_keys=lambda options: ("refresh_token",),
)
