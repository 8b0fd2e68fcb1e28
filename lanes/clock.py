"""Where Redis time lies on this process's clock: bounds learnt from round trips.

A script that read Redis `TIME` as `now` ran at some local moment between the
call leaving (`started`) and its reply arriving (`received`), so the offset
`time.monotonic() - redis_time` lies in [started - now, received - now]. Every
round trip narrows it (as NTP does): the offset is at least the largest lower
bound and at most the smallest upper bound of recent round trips. A slow round
trip (a loaded host) therefore does not blur it, and a caller can sleep until
its admitted moment is surely reached (never early) and know surely how late
it is (docs/DESIGN.md rule 9). Samples older than `keep` seconds are dropped so
that a slow drift between the clocks cannot accumulate; should the bounds ever
cross (a clock was stepped), only the latest round trip is trusted.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ClockBounds"]


class ClockBounds:
    """Sliding-window bounds (seconds) on `time.monotonic() - redis_time`."""

    def __init__(self, keep: float = 5.0) -> None:
        self._keep = keep
        # Monotonic deques: lows decreasing (front is the max), highs increasing (front min).
        self._lows: deque[tuple[float, float]] = deque()
        self._highs: deque[tuple[float, float]] = deque()
        self._latest = (float("-inf"), float("inf"))

    def sample(self, started: float, received: float, redis_now: float) -> None:
        low, high = started - redis_now, received - redis_now
        self._latest = (low, high)
        while self._lows and self._lows[-1][1] <= low:
            self._lows.pop()
        self._lows.append((received, low))
        while self._highs and self._highs[-1][1] >= high:
            self._highs.pop()
        self._highs.append((received, high))
        horizon = received - self._keep
        while self._lows[0][0] < horizon:
            self._lows.popleft()
        while self._highs[0][0] < horizon:
            self._highs.popleft()

    def bounds(self) -> tuple[float, float]:
        """(low, high): a Redis moment t happens locally within [t + low, t + high]."""
        if not self._lows:
            return self._latest
        low, high = self._lows[0][1], self._highs[0][1]
        return (low, high) if low <= high else self._latest
