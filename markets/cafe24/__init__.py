"""Cafe24 Admin API as a built-in market: `catalogue = "cafe24"`.

One app serves many malls: each mall (the message's seller, its Cafe24 mall id) installed
the app and has its own host, access token and rotating refresh token; every budget is
counted per mall. The token call goes to the mall's own host in its own budget.

What this follows (read 2026-12): developers.cafe24.com/docs/api/admin (base
`https://{mall_id}.cafe24api.com/api/v2/admin/...`, dates `YYYY-MM-DDTHH:MM:SS+09:00`,
errors `{"error": {"code", "message"}}`, the API limit section: a bucket of 40 per mall
and API refilled 2/s, `X-Api-Call-Limit`, `X-Cafe24-Call-Usage`/`-Remain`, 429);
developer.cafe24.com/guide/front/develop?guide_no=157 ("Issuing the refresh token":
`POST /api/v2/oauth/token` with HTTP Basic client_id:client_secret, `grant_type=refresh_token`;
the refresh token lives two weeks, is reissued on every exchange and "the old refresh
token can no longer be used"; the answer carries `access_token`, `expires_at`,
`refresh_token`, `refresh_token_expires_at`); developers.cafe24.com/docs-new/docs/guide/intro
(access token about 2 hours). Not confirmed in what was found, marked [?] where used: the
longest order search span (30 days assumed), the largest `offset` (15000) and `limit`
(1000), the orders' `date_type` values, and any grace for a refresh token just rotated
(none assumed: an answer lost on the wire after Cafe24 rotated is a lock-out).
"""

from __future__ import annotations

from typing import Any

from lanes.policy import Lane
from markets.auth import Auth
from markets.cafe24.auth import Cafe24Auth, Cafe24Tokens
from markets.cafe24.jobs import CAFE24_JOBS, KST, ORDERS
from markets.cafe24.refresh_store import RefreshStore, check_writable, refresh_store
from markets.client import Call
from markets.market import AuthSetup, Market, SimulatorEntry

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
    time_zone=KST,
    product_id_field="product_no",
    simulator=SimulatorEntry("markets.cafe24.simulator", rate=2.0, base_path="/{seller}/api/v2"),
    # The app's own keys; each mall's refresh token is its own (written back on rotation).
    app_keys=("client_id", "client_secret"),
    seller_keys=lambda options: ("refresh_token",),
    # Refused at load: a source the rotated refresh tokens cannot be written back to.
    check_options=check_writable,
)
