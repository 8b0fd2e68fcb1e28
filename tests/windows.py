"""Checking admitted moments against market windows, in whole microseconds."""

from __future__ import annotations

import bisect

from lanes import Window

__all__ = ["over_limit_windows"]


def over_limit_windows(moments: list[float], window: Window) -> int:
    """How many admitted moments close a trailing window holding more than the limit.

    In whole microseconds, as Redis keeps them: float seconds would blur the edges.
    """
    ordered = sorted(round(moment * 1_000_000) for moment in moments)
    span = round(window.seconds * 1_000_000)
    return sum(
        1
        for index, moment in enumerate(ordered)
        if index + 1 - bisect.bisect_right(ordered, moment - span) > window.limit
    )
