"""The market contract the README writes for users names every job kind and every endpoint
a TOML may override, for each built-in market (issue 18: users had to guess them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from lanes.limiter import Limiter
from lanes.settings import Settings
from markets import Call, Markets, registry
from markets.auth import NoAuth
from markets.catalogue import parse_with_catalogues
from markets.config import Config
from markets.market import Market, OrderShape, SimulatorEntry
from markets.registry import MARKETS, market_of
from markets.simulators import SimState, simulated, simulator_app
from scripts.local.devservices import export_lines
from scripts.local.services import SimulatorServer
from scripts.tools.backfill import window_jobs

_README = Path(__file__).resolve().parent.parent / "README.md"


def _markets_section() -> str:
    text = _README.read_text(encoding="utf-8")
    return text[text.index("## Markets\n") : text.index("## The worker\n")]


@pytest.mark.parametrize("name", sorted(MARKETS))
def test_the_readme_names_every_kind_and_endpoint_of_each_market(name: str) -> None:
    section = _markets_section()
    market = MARKETS[name]
    missing_kinds = [kind for kind in market.jobs if f"`{kind}`" not in section]
    endpoints = market.catalogue()["endpoints"]
    missing_endpoints = [endpoint for endpoint in endpoints if f"`{endpoint}`" not in section]
    assert (missing_kinds, missing_endpoints) == ([], [])


@pytest.mark.parametrize("name", sorted(MARKETS))
def test_the_readme_names_every_credential_of_each_market(name: str) -> None:
    section = _markets_section()
    market = MARKETS[name]
    keys = {*market.app_keys, *market.seller_keys({"token_type": "SELLER"})}
    assert [key for key in sorted(keys) if f"`{key}`" not in section] == []


# A market of the test's own, registered as a new market's one registry line would: nothing
# else in lanes names it, so what follows finds it only through the registry.
_FAKE_RATE = 3.0
_made: list[float] = []
TEST_CREDENTIALS = {"api_key": "fake-key"}


def make_app(rate: float, state: SimState) -> web.Application:
    """The fake market's simulator entry (`SimulatorEntry.module` names this test module)."""
    _made.append(rate)
    return web.Application()


class _FakeMarket(Market):
    def catalogue(self) -> dict[str, Any]:
        endpoints = {"item": {"path": "/shops/{shopId}/items/{item_no}", "rps": 5}}
        return {"auth": "none", "endpoints": endpoints}


_ZONE = timezone(timedelta(hours=-5))
FAKE = _FakeMarket(
    name="fakemart",
    auth_scheme="none",
    make_auth=lambda setup: NoAuth(),
    jobs={},
    orders=OrderShape(
        max_span=timedelta(hours=6),
        whole_days=False,
        order_key="order_no",
        id_field="order_no",
        statuses=(),
        settle=timedelta(),
        overlap=timedelta(),
        catch_up=timedelta(days=1),
        first_lookback=timedelta(days=1),
    ),
    time_zone=_ZONE,
    product_id_field="item_no",
    simulator=SimulatorEntry(__name__, rate=_FAKE_RATE, base_path="/api"),
    seller_path="shopId",
)


@pytest.fixture
def fake_market(monkeypatch: pytest.MonkeyPatch) -> Config:
    """FAKE in the registry (as its one line would put it), and a config using its catalogue."""
    monkeypatch.setitem(registry.MARKETS, FAKE.name, FAKE)
    table = {"catalogue": FAKE.name, "base_url": "http://127.0.0.1:9/api"}
    return parse_with_catalogues({"markets": {"shop": table}}, "test")


def test_a_registered_market_has_its_simulator_everywhere_simulators_are_named(
    fake_market: Config,
) -> None:
    """`python -m markets.simulators`, `scripts.demo.sim` and `lanes services` take their
    markets, base URLs and test credentials from the registry: the new market is simulated
    with its own rate, base path and credentials."""
    assert FAKE.name in simulated()
    simulator_app(FAKE.name)
    assert _made[-1] == _FAKE_RATE
    server = SimulatorServer(FAKE.name, 1.0, port=9)
    assert server.base_url == "http://127.0.0.1:9/api"
    lines = export_lines("redis://127.0.0.1:1/0", "http://127.0.0.1:2", Path("x"), [FAKE.name])
    assert "export LANES_CREDENTIALS__FAKEMART__API_KEY=fake-key" in lines


async def test_a_registered_market_is_run_backfilled_and_served_by_the_api(
    fake_market: Config, redis_client: aioredis.Redis, make_limiter: Callable[..., Limiter]
) -> None:
    """The worker fills the market's own seller placeholder, backfill reads naive dates in
    its time zone, and the API's product route fills its product id field."""
    shop = fake_market.markets["shop"]
    async with Markets(fake_market, Settings(), make_limiter(), redis_client) as markets:
        url = markets.client("shop").url(Call("item", path={"item_no": 7}), "s1")
    assert str(url) == "http://127.0.0.1:9/api/shops/s1/items/7"
    (_where, body), *_ = window_jobs(
        "shop", shop, "s1", datetime(2026, 1, 1), datetime(2026, 1, 1, 6), None
    )
    assert json.loads(body)["payload"]["since"] == "2026-01-01T00:00:00-05:00"
    built_in = market_of(shop)
    assert built_in is not None
    assert built_in.product_id_field == "item_no"
