"""The budget's part of the TOML file: windows, buckets, scopes and budget groups.

Frozen pydantic models, strict (docs/DESIGN.md, "Faults and bad input"): a TOML value of
the wrong type is refused, never converted. The rest of a market's table (where it is,
how requests are signed, each endpoint's method and path) and the whole file's model
are `markets.config`'s: lanes knows nothing of HTTP.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "STRICT",
    "Bucket",
    "GroupConfig",
    "Limits",
    "Scope",
    "Window",
    "describe_validation_error",
]

Scope = Literal["app", "seller"]

# Fractional rps (0.5, 0.006) becomes a whole number of requests over a longer
# window, exactly: 0.006 is 3 per 500 s. Windows longer than a day are refused.
_MAX_RPS_DENOMINATOR = 86_400
# Every model: TOML gives typed values, so a wrong type is a mistake, never converted.
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class Window(BaseModel):
    """At most `limit` requests in any trailing `seconds`."""

    model_config = STRICT

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

    model_config = STRICT

    size: int = Field(ge=1, le=1_000_000)
    refill_per_second: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)

    @property
    def seconds(self) -> float:
        """How long a full bucket takes to drain."""
        return self.size / self.refill_per_second


class Limits(BaseModel):
    """The limit fields shared by an endpoint and a budget group."""

    model_config = STRICT

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


class GroupConfig(Limits):
    """A named budget that several endpoints of one market share."""

    @model_validator(mode="after")
    def _has_limit(self) -> GroupConfig:
        if not self.all_windows() and self.bucket is None:
            raise ValueError("a budget group needs rps, windows or a bucket")
        return self


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """The first error of `exc` as one line: `source: dotted.field: message`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    count = exc.error_count()
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"{source}: {where}: {first['msg']}{more}"
