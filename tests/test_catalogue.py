"""`markets.load_config`: built-in catalogues expanded under the user's own fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes import ConfigError, Window
from markets import load_config
from markets.registry import MARKETS


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lanes.toml"
    path.write_text(text)
    return path


def test_catalogue_brings_endpoints_auth_and_base_url(tmp_path: Path) -> None:
    """`catalogue = "coupang"` alone gives the real endpoints, HMAC auth and the gateway."""
    config = load_config(_write(tmp_path, '[markets.coupang]\ncatalogue = "coupang"\n'))
    market = config.markets["coupang"]
    assert market.base_url == "https://api-gateway.coupang.com"
    assert market.auth == "coupang_hmac"
    orders = market.endpoints["orders"]
    assert orders.path == "/v2/providers/openapi/apis/api/v5/vendors/{vendorId}/ordersheets"
    assert market.groups[orders.group or ""].scope == "seller"


def test_user_fields_override_the_catalogue(tmp_path: Path) -> None:
    """The user's rps, base_url and extra windows win, field by field; the rest is kept."""
    text = """
[markets.naver]
catalogue = "naver"
base_url = "http://127.0.0.1:8080/external"
[markets.naver.endpoints.changed_orders]
rps = 5
windows = [{limit = 100, seconds = 60}]
"""
    market = load_config(_write(tmp_path, text)).markets["naver"]
    changed = market.endpoints["changed_orders"]
    assert market.base_url == "http://127.0.0.1:8080/external"
    assert changed.path == "/v1/pay-order/seller/product-orders/last-changed-statuses"
    assert changed.all_windows() == (Window(limit=5, seconds=1), Window(limit=100, seconds=60))
    assert changed.scope == "app"
    assert market.endpoints["order_details"].rps == 2


def test_both_catalogues_parse() -> None:
    """Every built-in catalogue is a valid market table."""
    for market in MARKETS.values():
        assert market.catalogue()["endpoints"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[markets.x]\ncatalogue = "amazon"\n', "markets.x.catalogue: unknown catalogue 'amazon'"),
        ('[markets.x]\nbase_url = "http://x"\nauth = "magic"\n', "unknown scheme 'magic'"),
        ('[markets.x]\ncatalogue = "naver"\n[markets.x.endpoints.token]\nrps = -1\n', "rps"),
    ],
)
def test_mistakes_are_one_line_config_errors(tmp_path: Path, text: str, message: str) -> None:
    """Wrong catalogue, unknown auth scheme, a bad override: ConfigError in one line."""
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(_write(tmp_path, text))
    assert "\n" not in str(raised.value)


def test_endpoint_timeouts_come_from_the_catalogue(tmp_path: Path) -> None:
    """Order pages wait longer than the market's default timeout; others use the default."""
    config = load_config(_write(tmp_path, '[markets.c]\ncatalogue = "coupang"\n'))
    market = config.markets["c"]
    assert market.endpoints["orders"].timeout == 90.0  # X-EXTENDED-TIMEOUT: 90000
    assert market.endpoints["product"].timeout is None
    assert market.timeout == 10.0


def test_a_wrong_credentials_source_is_refused_at_load(tmp_path: Path) -> None:
    """`options.credentials` names a known source, checked when the file loads."""
    text = '[markets.c]\ncatalogue = "coupang"\n[markets.c.options]\ncredentials = "vault:x"\n'
    with pytest.raises(ConfigError, match=r"markets\.c\.options\.credentials"):
        load_config(_write(tmp_path, text))
