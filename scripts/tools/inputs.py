"""Parsing what an operator types: durations, moments, and the usage error they raise."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from lanes.errors import LanesError

__all__ = ["UsageError", "parse_day_or_moment", "parse_duration"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class UsageError(LanesError):
    """The operator asked for something impossible: a bad argument or a bad input line."""


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `1d` (a number and one unit)."""
    found = _DURATION.match(text.strip().lower())
    if found is None:
        raise UsageError(f"bad duration {text!r} (use a number and s, m, h or d: 30s, 12h, 1d)")
    seconds = float(found[1]) * _UNIT_SECONDS[found[2]]
    if seconds <= 0:
        raise UsageError(f"duration {text!r} must be more than zero")
    return timedelta(seconds=seconds)


def parse_day_or_moment(text: str) -> date | datetime:
    """`2025-01-01` (a day) or an ISO 8601 moment `2025-01-01T09:00[+09:00]`."""
    try:
        if "T" in text or " " in text.strip():
            return datetime.fromisoformat(text.strip())
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"bad date {text!r} (use 2025-01-01 or 2025-01-01T09:00:00+09:00)"
        ) from None
