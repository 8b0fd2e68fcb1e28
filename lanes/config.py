"""The TOML file: markets, their endpoints and budgets, and the lane policies.

Loaded into frozen pydantic models, strictly (docs/DESIGN.md, "Faults and bad input"):
a TOML value of the wrong type is refused, never converted (`max_attempts = "3"` is
refused as `rps = "eight"` is), and a value the run could not use (a path that does not
format, a market name SQS or Redis would refuse) is refused at load. A wrong file raises
`ConfigError` with one line naming the file and the field.
"""

from __future__ import annotations

import math
import re
import string
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lanes.errors import ConfigError
from lanes.policy import LanePolicies

__all__ = [
    "Bucket",
    "Config",
    "EndpointConfig",
    "GroupConfig",
    "MarketConfig",
    "Scope",
    "Window",
    "daily_reset",
    "describe_validation_error",
    "parse_config",
    "read_toml",
]

Scope = Literal["app", "seller"]

# Fractional rps (0.5, 0.006) becomes a whole number of requests over a longer
# window, exactly: 0.006 is 3 per 500 s. Windows longer than a day are refused.
_MAX_RPS_DENOMINATOR = 86_400
# Budget names become Redis Cluster hash tags `{market:endpoint}`: no braces.
_NAME = re.compile(r"^[^{}\s]+$")
# A market names SQS queues (`{prefix}-{market}-{lane}`: ASCII letters, digits, - and _)
# and Redis keys (`{market:endpoint}`: no colon).
_MARKET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Every model: TOML gives typed values, so a wrong type is a mistake, never converted.
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
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


class Window(BaseModel):
    """At most `limit` requests in any trailing `seconds`."""

    model_config = _STRICT

    limit: int = Field(ge=1)
    seconds: float = Field(gt=0, allow_inf_nan=False)

    @classmethod
    def per_second(cls, rps: float) -> Window:
        """`rps` as a whole number of requests per window, exactly (never rounded up)."""
        exact = Fraction(str(rps))
        if exact.denominator > _MAX_RPS_DENOMINATOR:
            raise ValueError(
                f"rps {rps} is not a whole number of requests per day or less: "
                "write windows = [{limit = ..., seconds = ...}] instead"
            )
        return cls(limit=exact.numerator, seconds=float(exact.denominator))


class Bucket(BaseModel):
    """A leaky bucket: `size` calls at once, refilled `refill_per_second` (a burst of
    `size`, then the rate; Cafe24's 40 + 2/s). Checked exactly in the budget (GCRA)."""

    model_config = _STRICT

    size: int = Field(ge=1, le=1_000_000)
    refill_per_second: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)

    @property
    def seconds(self) -> float:
        """How long a full bucket takes to drain."""
        return self.size / self.refill_per_second


class _Limits(BaseModel):
    """The limit fields shared by an endpoint and a budget group."""

    model_config = _STRICT

    rps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # A TOML array is a list: the container may be one, each window is still strict.
    windows: tuple[Window, ...] = Field(default=(), strict=False)
    bucket: Bucket | None = None
    scope: Scope = "app"

    @field_validator("rps")
    @classmethod
    def _rps_exact(cls, rps: float | None) -> float | None:
        if rps is not None:
            Window.per_second(rps)
        return rps

    def all_windows(self) -> tuple[Window, ...]:
        """`rps` as a 1-second window, plus any extra windows."""
        base = (Window.per_second(self.rps),) if self.rps is not None else ()
        return base + self.windows


class GroupConfig(_Limits):
    """A named budget that several endpoints of one market share."""

    @model_validator(mode="after")
    def _has_limit(self) -> GroupConfig:
        if not self.all_windows() and self.bucket is None:
            raise ValueError("a budget group needs rps, windows or a bucket")
        return self


class EndpointConfig(_Limits):
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

    model_config = _STRICT

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

    model_config = _STRICT

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


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """The first error of `exc` as one line: `source: dotted.field: message`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    count = exc.error_count()
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"{source}: {where}: {first['msg']}{more}"


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
