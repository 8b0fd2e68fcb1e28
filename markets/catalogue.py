"""The TOML file with built-in market catalogues expanded.

`catalogue = "coupang"` (or "naver") in a market's table brings in the
market's real endpoints, budget groups, base URL and auth scheme from the
market's `markets/<name>/catalogue.toml`; whatever the user's table says wins, field by field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lanes.errors import ConfigError
from markets.config import Config, parse_config, read_toml
from markets.credentials import check_spec
from markets.registry import AUTH_MARKETS, AUTH_SCHEMES, built_in

__all__ = ["expand_catalogues", "load_config", "parse_with_catalogues"]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def expand_catalogues(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """`raw` with every market's catalogue merged under the user's own fields."""
    markets = raw.get("markets")
    if not isinstance(markets, dict):
        return raw
    expanded: dict[str, Any] = {}
    for name, table in markets.items():
        if isinstance(table, dict) and isinstance(table.get("catalogue"), str):
            try:
                table = _merge(built_in(table["catalogue"]).catalogue(), table)
            except ConfigError as exc:
                raise ConfigError(f"{source}: markets.{name}.catalogue: {exc}") from None
        expanded[name] = table
    return {**raw, "markets": expanded}


def _check_auth(config: Config, source: str) -> Config:
    for name, market in config.markets.items():
        if market.auth not in AUTH_SCHEMES:
            known = ", ".join(AUTH_SCHEMES)
            raise ConfigError(
                f"{source}: markets.{name}.auth: unknown scheme {market.auth!r} (known: {known})"
            )
        owner = AUTH_MARKETS.get(market.auth)
        try:
            check_spec(market.options.get("credentials", "env"))
            if owner is not None:
                owner.check_options(market.options)
        except ConfigError as exc:
            raise ConfigError(f"{source}: markets.{name}.options.{exc}") from None
    return config


def parse_with_catalogues(raw: dict[str, Any], source: str) -> Config:
    """`lanes.parse_config` with catalogues expanded and auth schemes checked."""
    return _check_auth(parse_config(expand_catalogues(raw, source), source), source)


def load_config(path: Path) -> Config:
    """The one loader of the TOML file: read, catalogues expanded, checked; raises a one-line
    `ConfigError`."""
    return parse_with_catalogues(read_toml(path), str(path))
