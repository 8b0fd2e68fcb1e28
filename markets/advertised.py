"""The rate limits a market advertises in its answers' headers.

Naver sends `GNCP-GW-RateLimit-Replenish-Rate/-Burst-Capacity/-Remaining`;
many APIs send `X-RateLimit-Limit/-Remaining/-Reset`; the IETF draft sends
`RateLimit-Policy: "default";q=100;w=10` and `RateLimit: "default";r=50;t=30`
(older drafts `RateLimit-Limit/-Remaining/-Reset`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Advertised", "read_advertised", "read_bucket_level", "read_usage_percent"]

_USED_OF = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_PARAM = re.compile(r"(?:^|;)\s*([a-z]+)\s*=\s*([0-9.]+)")


@dataclass(frozen=True, slots=True)
class Advertised:
    """What the headers said; `rate` (requests per second) only where a window is known."""

    source: str
    rate: float | None = None
    limit: float | None = None
    burst: float | None = None
    remaining: float | None = None
    reset: float | None = None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.split(",")[0].strip())
    except ValueError:
        return None


def _params(value: str | None) -> dict[str, float]:
    if not value:
        return {}
    first = value.split(",")[0]  # the first policy/limit item only
    return {name: float(number) for name, number in _PARAM.findall(first)}


def _naver(headers: Mapping[str, str]) -> Advertised | None:
    rate = _number(headers.get("GNCP-GW-RateLimit-Replenish-Rate"))
    if rate is None:
        return None
    return Advertised(
        source="GNCP-GW-RateLimit",
        rate=rate,
        burst=_number(headers.get("GNCP-GW-RateLimit-Burst-Capacity")),
        remaining=_number(headers.get("GNCP-GW-RateLimit-Remaining")),
    )


def _ietf(headers: Mapping[str, str]) -> Advertised | None:
    policy = _params(headers.get("RateLimit-Policy"))
    current = _params(headers.get("RateLimit"))
    limit = policy.get("q") or _number(headers.get("RateLimit-Limit"))
    window = policy.get("w")
    remaining = current.get("r", _number(headers.get("RateLimit-Remaining")))
    reset = current.get("t", _number(headers.get("RateLimit-Reset")))
    if limit is None and remaining is None:
        return None
    rate = limit / window if limit is not None and window else None
    return Advertised(source="RateLimit", rate=rate, limit=limit, remaining=remaining, reset=reset)


def _x_ratelimit(headers: Mapping[str, str]) -> Advertised | None:
    limit = _number(headers.get("X-RateLimit-Limit"))
    remaining = _number(headers.get("X-RateLimit-Remaining"))
    if limit is None and remaining is None:
        return None
    reset = _number(headers.get("X-RateLimit-Reset"))
    return Advertised(source="X-RateLimit", limit=limit, remaining=remaining, reset=reset)


def read_advertised(headers: Mapping[str, str]) -> Advertised | None:
    """The first advertised limit found (Naver, then IETF, then X-RateLimit), or None."""
    for reader in (_naver, _ietf, _x_ratelimit):
        found = reader(headers)
        if found is not None:
            return found
    return None


def read_bucket_level(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """A bucket's level as the market tells it, (used, size): Cafe24's
    `X-Api-Call-Limit: 12/40`. None where absent or not of that form."""
    found = _USED_OF.match(headers.get("X-Api-Call-Limit", ""))
    if found is None or int(found[2]) <= 0:
        return None
    return int(found[1]), int(found[2])


def read_usage_percent(headers: Mapping[str, str], name: str) -> float | None:
    """A usage limit's share spent, in percent, from the header `name` (Cafe24's
    `X-Cafe24-Call-Usage: 93.5`); None where absent or not a number."""
    value = headers.get(name)
    used = _number(value.replace("%", "")) if value is not None else None
    return used if used is not None and math.isfinite(used) else None
