"""The TOML file: markets, their endpoints and budgets, and the lane policies.

Loaded into frozen pydantic models; a wrong file raises `ConfigError` with one
line naming the file and the field.
"""

from __future__ import annotations

import math
import tomllib
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
    "Config",
    "EndpointConfig",
    "GroupConfig",
    "MarketConfig",
    "Scope",
    "Window",
    "describe_validation_error",
    "load_config",
    "parse_config",
    "read_toml",
]

Scope = Literal["app", "seller"]

# Fractional rps (0.5) becomes a whole number of requests over a longer window.
_MAX_RPS_DENOMINATOR = 100


class Window(BaseModel):
    """At most `limit` requests in any trailing `seconds`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(ge=1)
    seconds: float = Field(gt=0, allow_inf_nan=False)

    @classmethod
    def per_second(cls, rps: float) -> Window:
        ratio = Fraction(rps).limit_denominator(_MAX_RPS_DENOMINATOR)
        return cls(limit=ratio.numerator, seconds=float(ratio.denominator))


class _Limits(BaseModel):
    """The limit fields shared by an endpoint and a budget group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    windows: tuple[Window, ...] = ()
    scope: Scope = "app"

    @field_validator("rps")
    @classmethod
    def _exact(cls, rps: float | None) -> float | None:
        if rps is None:
            return rps
        # Held as whole requests per window: a rounded rate could exceed the market's.
        window = Window.per_second(rps)
        if window.limit > rps * window.seconds * 1.000001:
            raise ValueError(
                f"{rps} rps would be held as {window.limit} per {window.seconds:g} s, more "
                "than configured: use windows = [{limit = ..., seconds = ...}]"
            )
        return rps

    def all_windows(self) -> tuple[Window, ...]:
        """`rps` as a 1-second window, plus any extra windows."""
        base = (Window.per_second(self.rps),) if self.rps is not None else ()
        return base + self.windows


class GroupConfig(_Limits):
    """A named budget that several endpoints of one market share."""

    @model_validator(mode="after")
    def _has_limit(self) -> GroupConfig:
        if not self.all_windows():
            raise ValueError("a budget group needs rps or windows")
        return self


class EndpointConfig(_Limits):
    """One API endpoint: how to call it and which budget admits it."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(min_length=1)
    group: str | None = None

    @model_validator(mode="after")
    def _has_limit(self) -> EndpointConfig:
        if self.group is None and not self.all_windows():
            raise ValueError("an endpoint needs rps, windows or a budget group")
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        return self


class MarketConfig(BaseModel):
    """One market: where it is, how requests are signed, its endpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://")
    auth: str = "none"
    catalogue: str | None = None
    timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # Widens every budget window: the market counts arrivals, and the spread of
    # delays between admission and arrival must not put two windows' worth in one.
    margin_ms: float = Field(default=25.0, ge=0, allow_inf_nan=False)
    options: dict[str, str] = {}
    groups: dict[str, GroupConfig] = {}
    endpoints: dict[str, EndpointConfig] = {}

    @model_validator(mode="after")
    def _groups_exist(self) -> MarketConfig:
        _no_braces(self.endpoints, "endpoint")
        _no_braces(self.groups, "budget group")
        for option, value in self.options.items():
            if option.endswith("_seconds") and not _finite_positive(value):
                raise ValueError(f"option {option} = {value!r} is not a positive number")
        for name, endpoint in self.endpoints.items():
            if endpoint.group is not None and endpoint.group not in self.groups:
                raise ValueError(f"endpoint {name!r} names unknown budget group {endpoint.group!r}")
        return self


class Config(BaseModel):
    """The whole TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lanes: LanePolicies = LanePolicies()
    markets: dict[str, MarketConfig] = {}

    @model_validator(mode="after")
    def _names(self) -> Config:
        _no_braces(self.markets, "market")
        return self

    def market(self, name: str) -> MarketConfig:
        try:
            return self.markets[name]
        except KeyError:
            known = ", ".join(sorted(self.markets)) or "none"
            raise ConfigError(f"unknown market {name!r} (configured: {known})") from None


def _no_braces(names: dict[str, Any], what: str) -> None:
    # Names go into the budget's Redis keys, whose `{...}` is the cluster hash tag.
    for name in names:
        if "{" in name or "}" in name:
            raise ValueError(f"{what} name {name!r} may not contain '{{' or '}}'")


def _finite_positive(text: str) -> bool:
    try:
        return math.isfinite(float(text)) and float(text) > 0
    except ValueError:
        return False


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


def load_config(path: Path) -> Config:
    return parse_config(read_toml(path), str(path))
