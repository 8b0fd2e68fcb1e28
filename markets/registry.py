"""The built-in markets, in one list.

Adding a market: write `markets/<name>.py` building a `Market` (its jobs, auth
factory and order shape; see `markets/coupang/__init__.py`), put its endpoints in
`markets/<name>.toml`, and add its `MARKET` to `BUILT_IN` below.
"""

from __future__ import annotations

from collections.abc import Mapping

from lanes.errors import ConfigError
from markets import cafe24, coupang, naver
from markets.auth import Auth, NoAuth
from markets.market import AuthFactory, AuthSetup, Market

__all__ = ["AUTH_MARKETS", "AUTH_SCHEMES", "JOB_KINDS", "MARKETS", "built_in"]

BUILT_IN: tuple[Market, ...] = (coupang.MARKET, naver.MARKET, cafe24.MARKET)

MARKETS: Mapping[str, Market] = {market.name: market for market in BUILT_IN}


def _no_auth(setup: AuthSetup) -> Auth:
    return NoAuth()


AUTH_SCHEMES: Mapping[str, AuthFactory] = {
    "none": _no_auth,
    **{market.auth_scheme: market.make_auth for market in BUILT_IN},
}

# The market whose auth scheme each is: its `app_keys` and `seller_keys` are what the scheme reads.
AUTH_MARKETS: Mapping[str, Market] = {market.auth_scheme: market for market in BUILT_IN}

# Every kind some market offers, plus the generic `call`.
JOB_KINDS: tuple[str, ...] = ("call", *sorted({kind for m in BUILT_IN for kind in m.jobs}))


def built_in(name: str) -> Market:
    """The built-in market `name`; a `ConfigError` naming the known ones."""
    market = MARKETS.get(name)
    if market is None:
        known = ", ".join(MARKETS)
        raise ConfigError(f"unknown catalogue {name!r} (built in: {known})")
    return market
