"""The TOML file: markets, their endpoints and budgets, and the lane policies.

Loaded into frozen pydantic models, strictly (docs/DESIGN.md, "Faults and bad input"):
a TOML value of the wrong type is refused, never converted (`max_attempts = "3"` is
refused as `rps = "eight"` is), and a value the run could not use (a path that does not
format, a market name SQS or Redis would refuse) is refused at load. A wrong file raises
`ConfigError` with one line naming the file and the field. The budget's part of each
table (windows, buckets, scopes, groups) is `lanes.config`'s.
"""

from __future__ import annotations

import math
import re
import string
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from lanes.config import STRICT, GroupConfig, Limits, describe_validation_error
from lanes.errors import ConfigError
from lanes.policy import LanePolicies

__all__ = [
    "Config",
    "EndpointConfig",
    "MarketConfig",
    "daily_reset",
    "parse_config",
    "read_toml",
]

# Budget names become Redis Cluster hash tags `{market:endpoint}`: no braces.
_NAME = re.compile(r"^[^{}\s]+$")
# A market names SQS queues (`{prefix}-{market}-{lane}`: ASCII letters, digits, - and _)
# and Redis keys (`{market:endpoint}`: no colon).
_MARKET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Market options the budget reads as numbers of seconds (markets.ratelimits).
_SECONDS_OPTIONS = (
    "cooldown_seconds",
    "cooldown_max_seconds",
    "quota_pause_seconds",
    "advertised_ttl_seconds",
    "slowdown_seconds",
    "usage_pause_seconds",
)
_RESET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)([+-])([01]\d):([0-5]\d)$")


def daily_reset(spec: str, now: datetime) -> datetime:
    """The next moment after `now` of a daily reset written "HH:MM+09:00"."""
    found = _RESET.match(spec)
    if found is None:
        raise ValueError(f"{spec!r} is not a daily time like 00:00+09:00")
    hour, minute, sign, off_hours, off_minutes = found.groups()
    offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
    zone = timezone(offset if sign == "+" else -offset)
    local = now.astimezone(zone)
    moment = local.replace(hour=int(hour), minute=int(minute), second=0, microsecond=0)
    return moment if moment > local else moment + timedelta(days=1)


def _check_names(names: dict[str, Any], what: str) -> None:
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"{what} name {name!r} may not contain braces or spaces")


def _check_path(path: str) -> None:
    """A path template the client can fill: text and `{name}` placeholders only."""
    try:
        parts = list(string.Formatter().parse(path))
    except ValueError as exc:
        raise ValueError(f"path {path!r} is not a path template: {exc}") from None
    for _text, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(
                f"path {path!r}: placeholder {{{name}}} must be a plain name such as {{orderId}}"
            )


class EndpointConfig(Limits):
    """One API endpoint: how to call it and which budget admits it."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(min_length=1)
    group: str | None = None
    # Seconds to wait for this endpoint's answer; unset means the market's `timeout`.
    timeout: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _has_limit(self) -> EndpointConfig:
        if self.group is None and not self.all_windows() and self.bucket is None:
            raise ValueError("an endpoint needs rps, windows, a bucket or a budget group")
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        _check_path(self.path)
        return self


class MarketConfig(BaseModel):
    """One market: where it is, how requests are signed, its endpoints."""

    model_config = STRICT

    base_url: str = Field(pattern=r"^https?://")
    auth: str = "none"
    catalogue: str | None = None
    timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # Widens every budget window: the market counts arrivals, and the spread of
    # delays between admission and arrival must not put two windows' worth in one.
    margin_ms: float = Field(default=25.0, ge=0, le=60_000, allow_inf_nan=False)
    # Lanes below high may use the headroom above their ceilings while no higher lane
    # has called lately (docs/DESIGN.md rule 2, "Lending"); off, the ceilings always hold.
    lend_idle: bool = False
    options: dict[str, str] = {}
    groups: dict[str, GroupConfig] = {}
    endpoints: dict[str, EndpointConfig] = {}

    @model_validator(mode="after")
    def _groups_exist(self) -> MarketConfig:
        _check_names(self.endpoints, "endpoint")
        _check_names(self.groups, "budget group")
        _check_options(self.options)
        for name, endpoint in self.endpoints.items():
            if endpoint.group is not None and endpoint.group not in self.groups:
                raise ValueError(f"endpoint {name!r} names unknown budget group {endpoint.group!r}")
        return self


def _check_share(options: dict[str, str], name: str, most: float) -> None:
    """An option that is a share of something (a factor, a percent): above 0, at most `most`."""
    if name not in options:
        return
    try:
        value = float(options[name])
    except ValueError:
        value = math.nan
    if not 0 < value <= most:
        raise ValueError(f"option {name} must be a number above 0, at most {most:g}")


def _check_options(options: dict[str, str]) -> None:
    """The options the budget reads must be usable: one clear error at load, not per job."""
    seconds: dict[str, float] = {}
    for name in _SECONDS_OPTIONS:
        if name not in options:
            continue
        try:
            value = float(options[name])
        except ValueError:
            raise ValueError(
                f"option {name} must be a number of seconds, not {options[name]!r}"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"option {name} must be a positive, finite number of seconds")
        seconds[name] = value
    _check_share(options, "slowdown_after_429", 1)
    _check_share(options, "usage_pause_percent", 100)
    if seconds.get("cooldown_max_seconds", 60.0) < seconds.get("cooldown_seconds", 1.0):
        raise ValueError("option cooldown_max_seconds must not be below cooldown_seconds")
    if "quota_reset" in options:
        daily_reset(options["quota_reset"], datetime.now(UTC))


class Config(BaseModel):
    """The whole TOML file."""

    model_config = STRICT

    lanes: LanePolicies = LanePolicies()
    markets: dict[str, MarketConfig] = {}

    @field_validator("markets")
    @classmethod
    def _market_names(cls, markets: dict[str, MarketConfig]) -> dict[str, MarketConfig]:
        for name in markets:
            if not _MARKET.match(name):
                raise ValueError(
                    f"market name {name!r} must be 1 to 64 ASCII letters, digits, '-' or '_' "
                    "(it names SQS queues and Redis keys)"
                )
        return markets

    def market(self, name: str) -> MarketConfig:
        try:
            return self.markets[name]
        except KeyError:
            known = ", ".join(sorted(self.markets)) or "none"
            raise ConfigError(f"unknown market {name!r} (configured: {known})") from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (set LANES_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def parse_config(raw: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from None
