"""The market contract: what a market brings (its TOML catalogue, auth, job kinds, order
shape, time zone, product id field and simulator), in one `Market`.

Each market is a package `markets/<name>/` whose `__init__.py` builds its `MARKET`
(beside it: `catalogue.toml`, `auth.py`, `jobs.py`, `simulator.py`); `markets/registry.py`
lists them. Adding a market is its folder and one line in the registry: everything else
(the worker, the API, the simulators' command line, `lanes services`, backfill) reads the
`Market`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from markets.auth import Auth
from markets.client import MarketClient
from markets.config import MarketConfig
from markets.credentials import Credentials
from markets.jobs import JobSpec

__all__ = ["AuthFactory", "AuthSetup", "Market", "OrderShape", "SimulatorEntry"]


@dataclass(frozen=True)
class OrderShape:
    """How a market's order collection takes a window, so that every order comes once.

    `max_span`: the longest window one query accepts; `whole_days`: the window is in
    days (both ends included) rather than moments; `order_key`: the field that
    identifies an order in `collect_orders` results (de-duplication); `id_field`: the
    `collect_order` payload field one order id fills; `statuses`: what is collected
    by default (every active status); `settle`: how far behind now a window stops
    (the market's index lags its writes); `overlap`: how far before the last
    watermark an incremental window starts (an order that changed while paged is
    read again); `catch_up`: the longest span one incremental run collects (a run after an
    outage takes the gap a span at a time, each delivered before the watermark moves;
    `options.catch_up_seconds`); `first_lookback`: how far back a seller's first run
    starts (`options.first_lookback_seconds`).
    """

    max_span: timedelta
    whole_days: bool
    order_key: str
    id_field: str
    statuses: tuple[str, ...]
    settle: timedelta
    overlap: timedelta
    catch_up: timedelta
    first_lookback: timedelta


@dataclass(frozen=True)
class AuthSetup:
    """What an auth factory may use: the market's name and table, its credentials, Redis
    (shared caches) and its client (a token call goes through its budget)."""

    name: str
    config: MarketConfig
    credentials: Credentials
    redis: aioredis.Redis
    client: MarketClient


AuthFactory = Callable[[AuthSetup], Auth]


@dataclass(frozen=True)
class SimulatorEntry:
    """The market's local simulator: `module` holds `make_app(rate, state)` and its
    `TEST_CREDENTIALS` (imported only when a simulator runs, so the worker never loads it);
    `rate` its default rate (what `rate` means is the simulator's: calls/s, a token refill,
    a bucket's leak); `base_path` what follows `http://127.0.0.1:<port>` in its `base_url`.
    Like `module`, `demo` is imported only when the demo runs."""

    module: str
    rate: float
    base_path: str = ""
    # `lanes services`' default port for it (`--<name>-port`); None: not started there.
    port: int | None = None
    # The module of its part in `lanes demo`'s burst (`DEMO`, a
    # `markets.simulators.demo.DemoLoad`); None: not in the demo.
    demo: str | None = None


@dataclass(frozen=True)
class Market:
    """One built-in market: `catalogue = "<name>"` in a TOML table brings it in."""

    name: str
    auth_scheme: str  # the catalogue's `auth`; any market table may name it
    make_auth: AuthFactory
    jobs: Mapping[str, JobSpec]
    orders: OrderShape
    time_zone: tzinfo  # the market's own time: naive dates and moments are read in it
    # The payload field of `get_product` one product id fills (the API's product route).
    product_id_field: str = "product_id"
    simulator: SimulatorEntry | None = None
    # The market's own name for the seller in its paths (besides `{seller}`), filled from the
    # message's seller: Coupang's `{vendorId}`.
    seller_path: str | None = None
    # The credentials its auth reads, checked at worker start-up: `app_keys` are the
    # application's own, market-wide; `seller_keys(options)` sign or identify a seller and
    # come from each seller's own entry only (markets/credentials.py).
    app_keys: tuple[str, ...] = ()
    seller_keys: Callable[[Mapping[str, str]], tuple[str, ...]] = lambda options: ()
    # The market's own check of a table's options when the TOML is loaded (a `ConfigError`
    # whose text starts with the option's name): what only this market needs of them.
    check_options: Callable[[Mapping[str, str]], None] = lambda options: None

    def catalogue(self) -> dict[str, Any]:
        """The market's built-in TOML table (`markets/<name>/catalogue.toml`) as raw data."""
        path = resources.files(f"markets.{self.name}").joinpath("catalogue.toml")
        return tomllib.loads(path.read_text(encoding="utf-8"))
