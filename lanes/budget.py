"""The budget as an algorithm: which checks a lane's acquire must pass.

Storage-free (like the `limits` library's strategies): `lanes.limiter` runs
these checks in Redis. A budget is a set of market windows ("at most L
requests in any trailing P seconds"); a lane with ceiling c may only push the
total usage of all lanes to c x L, rounded down to whole requests so that the
lanes above always find their room. Where c x L is below one request per
window, the ceiling is held over the shortest longer span in which it is whole
(0.7 of 1/s is 7 per 10 s), so the lane's long-run rate is still c x L.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from lanes.config import Bucket, Scope, Window
from lanes.epoch import epoch_key

__all__ = ["PACE_ABOVE", "PACE_BURST", "Admission", "Budget", "Check", "SellerStates", "split_name"]

# Ceiling spans stay short enough to matter: 0.7 of 1/s is held as 7 per 10 s.
_MAX_SPAN_MULTIPLE = 20
# Admitted moments are paced where the shortest window allows more than PACE_ABOVE:
# at most PACE_BURST of them in any PACE_BURST / rate seconds. A sliding log otherwise
# replays its first burst at the start of every window, and hundreds of requests
# admitted for one moment cannot all leave their processes, nor be read by the
# market, within the margin: they would be late by construction (docs/DESIGN.md
# rule 9); and a 429 would find them all past the last check already.
PACE_ABOVE = 20
PACE_BURST = 5
_US = 1_000_000
# SCAN MATCH's special characters, escaped where a budget's name is matched literally.
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _name(market: str, endpoint: str, seller: str | None = None) -> str:
    """`market:endpoint` (app scope) or `market:endpoint:seller` (seller scope)."""
    return f"{market}:{endpoint}" + (f":{seller}" if seller is not None else "")


def split_name(name: str) -> tuple[str, str, str | None]:
    """A budget's name as (market, endpoint, seller or None); a seller may hold ':'."""
    market, _, rest = name.partition(":")
    endpoint, _, seller = rest.partition(":")
    return market, endpoint, seller or None


def _key(name: str, kind: str) -> str:
    """Every key of a budget carries its name as one Cluster hash tag."""
    return f"lanes:{{{name}}}:{kind}"


@dataclass(frozen=True, slots=True)
class Check:
    """No window of `span_us` microseconds may hold more than `cap` requests (all lanes).

    `exact` checks (the shortest window's) are placed exactly from the entries of their
    span; the others by rank lookups that cost O(log n) however full the log is.
    `pace` checks are not the market's rule (see `PACE_BURST`): a caller that woke late
    may be admitted at once without them (`Limiter.admit`).
    """

    cap: int
    span_us: int
    exact: bool = True
    pace: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to one acquire.

    `granted`: the request is admitted and may be sent after `wait` seconds
    (0 when at once; more when a moment ahead was reserved for it). Not granted:
    nothing was recorded, and asking again sooner than `wait` is pointless.
    """

    granted: bool
    wait: float
    at: float = 0.0  # the admitted (or earliest possible) moment, Redis time in seconds


@dataclass(frozen=True)
class Budget:
    """One shared budget: its identity, its windows and its safety margin.

    `name` is `market:endpoint` (app scope) or `market:endpoint:seller` (seller
    scope); every Redis key of the budget carries it as one Cluster hash tag.
    """

    name: str
    windows: tuple[Window, ...]
    margin_ms: float = 0.0
    # Lanes may lend idle headroom above their ceilings (docs/DESIGN.md rule 2, "Lending").
    lend_idle: bool = False
    bucket: Bucket | None = None
    _checks: dict[float, tuple[Check, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.windows and self.bucket is None:
            raise ValueError(f"budget {self.name!r} has no window and no bucket")
        if "{" in self.name or "}" in self.name:
            raise ValueError(f"budget name {self.name!r} may not contain braces")
        if not math.isfinite(self.margin_ms) or self.margin_ms < 0:
            raise ValueError(f"budget {self.name!r}: margin_ms must be finite and >= 0")

    @classmethod
    def for_endpoint(
        cls,
        market: str,
        endpoint: str,
        windows: tuple[Window, ...],
        *,
        scope: Scope = "app",
        seller: str | None = None,
        margin_ms: float = 0.0,
        lend_idle: bool = False,
        bucket: Bucket | None = None,
    ) -> Budget:
        """The budget of `endpoint` (or budget group): one per app, or one per seller."""
        name = _name(market, endpoint)
        if scope == "seller":
            if not seller:
                raise ValueError(f"budget {name!r} is counted per seller: a seller is needed")
            name = _name(market, endpoint, seller)
        return cls(
            name=name, windows=windows, margin_ms=margin_ms, lend_idle=lend_idle, bucket=bucket
        )

    @property
    def log_key(self) -> str:
        return _key(self.name, "log")

    @property
    def epoch_key(self) -> str:
        """Its hash slot's epoch (`lanes.epoch`): tells a new budget from a lost one (rule 10)."""
        return epoch_key(self.name)

    @property
    def demand_key(self) -> str:
        """Which lanes called lately (lending, docs/DESIGN.md rule 2): expires by itself."""
        return _key(self.name, "demand")

    @property
    def state_key(self) -> str:
        """The hash every worker shares: cooldown, quota pause, advertised limit, `known`."""
        return _key(self.name, "state")

    @property
    def bucket_key(self) -> str:
        """The bucket's theoretical arrival time (`acquire.lua`, GCRA), where it has one."""
        return _key(self.name, "bucket")

    def bucket_cap(self, ceiling: float) -> int:
        """The bucket's level (calls) a lane with this `ceiling` may fill it to: its share
        of the size, rounded down so that the lanes above find their room (at least 1)."""
        assert self.bucket is not None
        return max(1, math.floor(Fraction(ceiling).limit_denominator(100) * self.bucket.size))

    @property
    def rate(self) -> float:
        """The configured rate, requests per second, of the strictest window or the bucket."""
        rates = [window.limit / window.seconds for window in self.windows]
        if self.bucket is not None:
            rates.append(self.bucket.refill_per_second)
        return min(rates)

    @property
    def shown(self) -> tuple[int, float]:
        """The limit `lanes status` shows (requests, seconds): the first window's, or a
        bucket alone's size over the time it takes to drain."""
        if self.windows:
            return self.windows[0].limit, self.windows[0].seconds
        assert self.bucket is not None
        return self.bucket.size, self.bucket.seconds

    @property
    def shortest_seconds(self) -> float:
        """The shortest window's length; a bucket alone: the time it takes to drain."""
        if not self.windows:
            assert self.bucket is not None
            return self.bucket.seconds
        return min(window.seconds for window in self.windows)

    @property
    def lend_hold_us(self) -> int:
        """How long a lane's call holds the lower lanes to their ceilings: the shortest
        window with its margin (what a higher lane may have used lately)."""
        return round(self.shortest_seconds * _US + self.margin_ms * 1000)

    @property
    def lend_reach_us(self) -> int:
        """How far ahead a lent moment may lie: the margin and one pace span (a paced
        budget's next moment is rarely now), so lent entries never hold windows ahead."""
        pace = self._pace()
        return round(self.margin_ms * 1000) + (round(pace.seconds * _US) if pace else 0)

    def lent(self, ceiling: float, checks: tuple[Check, ...]) -> tuple[bool, ...]:
        """Per check of a lane with `ceiling`: whether lending lifts it, that is whether it
        is the lane's share of the shortest window (or of the pace), not the market's own
        check. Longer windows keep their ceilings: a loan there could cost a higher lane a
        long window's wait."""
        if ceiling >= 1.0:
            return tuple(False for _ in checks)
        market = set(self.checks(1.0))
        return tuple(check.exact and check not in market for check in checks)

    @property
    def capacity(self) -> int:
        """The most requests one acquire can ever ask for (the pace's burst at most): the
        smallest cap of the full-ceiling checks, which are cached (this runs per acquire)."""
        caps = [check.cap for check in self.checks(1.0)]
        if self.bucket is not None:
            caps.append(self.bucket.size)
        return min(caps)

    def _pace(self) -> Window | None:
        """PACE_BURST per PACE_BURST / rate seconds, where the shortest window allows more
        than PACE_ABOVE. A bucket is not paced: its burst is the market's to give (and
        its size bounds what one moment may be granted)."""
        if self.bucket is not None or not self.windows:
            return None
        shortest = min(self.windows, key=lambda window: window.seconds)
        if shortest.limit <= PACE_ABOVE:
            return None
        return Window(limit=PACE_BURST, seconds=shortest.seconds * PACE_BURST / shortest.limit)

    def checks(self, ceiling: float) -> tuple[Check, ...]:
        """The checks an acquire in a lane with this `ceiling` must pass."""
        cached = self._checks.get(ceiling)
        if cached is None:
            margin_us = round(self.margin_ms * 1000)
            found: list[Check] = []
            shortest = self.shortest_seconds
            for window in self.windows:
                exact = window.seconds == shortest
                found.extend(
                    _window_checks(window.limit, window.seconds, ceiling, margin_us, exact)
                )
            pace = self._pace()
            if pace is not None:
                found.extend(_pace_checks(pace, ceiling))
            cached = tuple(dict.fromkeys(found))
            self._checks[ceiling] = cached
        return cached


def _pace_checks(pace: Window, ceiling: float) -> list[Check]:
    """Pacing is not the market's rule: no margin, and each lane keeps its exact share
    (3.5 of 5 is held as 7 per two pace spans), so the pace costs no lane its rate."""
    span_us = round(pace.seconds * _US)
    checks = [Check(pace.limit, span_us, pace=True)]
    if ceiling < 1.0:
        share = Fraction(ceiling).limit_denominator(100) * pace.limit
        multiple = min(share.denominator, _MAX_SPAN_MULTIPLE)
        cap = max(1, math.floor(share * multiple))
        checks.append(Check(cap, span_us * multiple, pace=True))
    return checks


def _window_checks(
    limit: int, seconds: float, ceiling: float, margin_us: int, exact: bool
) -> list[Check]:
    span_us = round(seconds * _US) + margin_us
    checks = [Check(limit, span_us, exact)]
    if ceiling >= 1.0:
        return checks
    share = Fraction(ceiling).limit_denominator(100) * limit
    whole = math.floor(share)
    if whole >= 1:
        checks.append(Check(whole, span_us, exact))
        return checks
    multiple = min(share.denominator, _MAX_SPAN_MULTIPLE)
    cap = max(1, math.floor(share * multiple))
    checks.append(Check(cap, round(seconds * multiple * _US) + margin_us, exact))
    return checks


@dataclass(frozen=True, slots=True)
class SellerStates:
    """The state keys of an endpoint's (or group's) seller-scope budgets, one per seller
    that has used it (`lanes status` finds them so): `pattern` for SCAN MATCH, and
    `seller(key)`, the seller a key found is of."""

    market: str
    endpoint: str

    def _parts(self) -> tuple[str, str]:
        """The key before the seller, and after it."""
        before, after = _key(_name(self.market, self.endpoint, "\0"), "state").split("\0")
        return before, after

    @property
    def pattern(self) -> str:
        before, after = self._parts()
        return _GLOB_SPECIAL.sub(r"\\\1", before) + "*" + after

    def seller(self, key: str) -> str:
        before, after = self._parts()
        return key[len(before) : -len(after)]
