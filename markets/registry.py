"""The built-in markets, in one list.

Adding a market: write the package `markets/<name>/` whose `__init__.py` builds a `Market`
(markets/market.py; see `markets/coupang/__init__.py`), with its endpoints in
`markets/<name>/catalogue.toml`, and add its `MARKET` to `BUILT_IN` below. Everything that
names a market reads it from here.
"""

from __future__ import annotations

from collections.abc import Mapping

from lanes.errors import ConfigError
from markets import cafe24, coupang, naver
from markets.auth import Auth, NoAuth
from markets.config import MarketConfig
from markets.market import AuthFactory, AuthSetup, Market

__all__ = ["AUTH_MARKETS", "AUTH_SCHEMES", "JOB_KINDS", "MARKETS", "built_in", "market_of"]

BUILT_IN: tuple[Market, ...] = (coupang.MARKET, naver.MARKET, cafe24.MARKET)

MARKETS: dict[str, Market] = {market.name: market for market in BUILT_IN}


def _no_auth(setup: AuthSetup) -> Auth:
    return NoAuth()


AUTH_SCHEMES: Mapping[str, AuthFactory] = {
    "none": _no_auth,
    **{market.auth_scheme: market.make_auth for market in BUILT_IN},
}

# The market whose auth scheme each is: its `app_keys` and `seller_keys` are what the scheme reads.
AUTH_MARKETS: dict[str, Market] = {market.auth_scheme: market for market in BUILT_IN}

# Every kind some market offers, plus the generic `call`.
JOB_KINDS: tuple[str, ...] = ("call", *sorted({kind for m in BUILT_IN for kind in m.jobs}))


def built_in(name: str) -> Market:
    """The built-in market `name`; a `ConfigError` naming the known ones."""
    market = MARKETS.get(name)
    if market is None:
        known = ", ".join(MARKETS)
        raise ConfigError(f"unknown catalogue {name!r} (built in: {known})")
    return market


def market_of(config: MarketConfig) -> Market | None:
    """The built-in market a configured market's `catalogue` brings in; None for a market
    of the user's own (no catalogue, or one not built in)."""
    return MARKETS.get(config.catalogue or "")
