"""What a market's answer says about its limits, turned into budget state every worker shares.

- a 429 cools the budget down (the market's `Retry-After`, else a backoff that
  escalates once per cooldown and decays after successes, never past
  `cooldown_max_seconds`), see `lanes/pause.lua`;
- a quota answer (a code the market's options list in `quota_codes`) pauses the
  budget until the quota resets and raises `QuotaExhausted`;
- an advertised lower limit (`GNCP-GW-RateLimit-*`, `RateLimit-*`) is adopted by
  every worker for `advertised_ttl_seconds` (docs/DESIGN.md rule 5);
- a usage limit near spent (the header `usage_header` names, percent used: Cafe24's
  mall-wide `X-Cafe24-Call-Usage`) at or past `usage_pause_percent` pauses every budget
  of the seller's, as a quota answer does, for `usage_pause_seconds`: the next calls
  wait instead of being refused with 429; the answer itself is the caller's.

Market options (all optional, checked at load by `markets.config`):
`cooldown_seconds` (1), `cooldown_max_seconds` (60), `quota_codes` (comma-separated),
`quota_reset` (daily reset time, "HH:MM+09:00"), `quota_pause_seconds` (3600),
`quota_period_header` (a header naming the quota's period: SECONDS, MINUTES, HOURS or
DAYS; the pause lasts one period), `advertised_ttl_seconds` (600), `usage_header` (none),
`usage_pause_percent` (90), `usage_pause_seconds` (10), `denied_burst_text`
(a 403 whose body holds this text is the gateway's temporary block after a burst:
cooled down like a 429, not a permanent refusal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from lanes.budget import Budget
from lanes.errors import BudgetUnavailable
from lanes.limiter import Limiter, Ticket
from markets.advertised import read_advertised, read_bucket_level, read_usage_percent
from markets.config import daily_reset
from markets.errors import QuotaExhausted, RateLimited

__all__ = ["RateLimits", "retry_after_seconds"]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date; None when unusable
    (missing, malformed, not finite)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


# A quota's period as its header names it (Naver's `GNCP-GW-Quota-Period`), in seconds.
_PERIODS = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}


class RateLimits:
    """One market's handling of 429s, quota answers and advertised limits."""

    def __init__(self, market: str, options: Mapping[str, str], limiter: Limiter) -> None:
        self._market = market
        self._limiter = limiter
        self._cooldown = float(options.get("cooldown_seconds", "1"))
        self._cooldown_max = float(options.get("cooldown_max_seconds", "60"))
        self._quota_codes = frozenset(
            code.strip() for code in options.get("quota_codes", "").split(",") if code.strip()
        )
        self._quota_reset = options.get("quota_reset")
        self._quota_pause = float(options.get("quota_pause_seconds", "3600"))
        self._quota_period_header = options.get("quota_period_header")
        self._denied_burst = options.get("denied_burst_text")
        self._advertised_ttl = float(options.get("advertised_ttl_seconds", "600"))
        self._usage_header = options.get("usage_header")
        self._usage_at = float(options.get("usage_pause_percent", "90"))
        self._usage_pause = float(options.get("usage_pause_seconds", "10"))
        self._slowdown = float(options.get("slowdown_after_429", "0.5"))
        self._slowdown_for = float(options.get("slowdown_seconds", "10"))
        self._adopted: dict[str, tuple[float, float]] = {}  # budget -> (rate, monotonic written)

    def is_quota(self, code: str | None) -> bool:
        return code is not None and code in self._quota_codes

    def is_denied_burst(self, status: int, text: str) -> bool:
        """A 403 the market gives for a while after a burst of calls or errors."""
        return status == 403 and self._denied_burst is not None and self._denied_burst in text

    def _quota_period(self, headers: Mapping[str, str]) -> float | None:
        if not self._quota_period_header:
            return None
        unit = headers.get(self._quota_period_header, "").strip().upper().rstrip("S")
        return _PERIODS.get(unit)

    async def quota_exhausted(
        self,
        headers: Mapping[str, str],
        code: str,
        endpoint: str,
        budget: Budget,
        bound: Any,
    ) -> QuotaExhausted:
        """Pause the budget until the quota resets; the error to raise."""
        seconds = retry_after_seconds(headers.get("Retry-After"))
        if seconds is None:
            seconds = self._quota_period(headers)
        if seconds is None and self._quota_reset:
            now = datetime.now().astimezone()
            seconds = (daily_reset(self._quota_reset, now) - now) / timedelta(seconds=1)
        if seconds is None:
            seconds = self._quota_pause
        seconds = max(1.0, seconds)
        try:
            await self._limiter.pauses.pause_for_quota(budget, seconds)
        except BudgetUnavailable as exc:
            bound.warning("market.quota_pause_failed", error=str(exc))
        bound.warning("market.quota_exhausted", code=code, pause=round(seconds, 1))
        return QuotaExhausted(
            market=self._market,
            endpoint=endpoint,
            retry_after=seconds,
            retry_at=time.time() + seconds,
            code=code,
        )

    async def observe_usage(
        self,
        headers: Mapping[str, str],
        budgets: Callable[[], Sequence[Budget]],
        bound: Any,
    ) -> None:
        """A usage limit spent to `usage_pause_percent` or more pauses `budgets()` (every
        budget the limit covers: a mall's, for Cafe24) for every worker, through the quota
        pause, until it has drained: no call is sent into the 429 past it. A budget this
        process knows paused for half the usage pause or more is left as it is (no round
        trip per answer)."""
        if not self._usage_header:
            return
        used = read_usage_percent(headers, self._usage_header)
        if used is None or used < self._usage_at:
            return
        paused = 0
        for budget in budgets():
            if self._limiter.watch.paused(budget.name) >= self._usage_pause / 2:
                continue
            try:
                await self._limiter.pauses.pause_for_quota(budget, self._usage_pause)
            except BudgetUnavailable as exc:
                bound.warning("market.usage_pause_failed", error=str(exc))
                return
            paused += 1
        if paused:
            bound.warning(
                "market.usage_near_limit", used=used, budgets=paused, pause=self._usage_pause
            )

    async def rate_limited(
        self,
        headers: Mapping[str, str],
        text: str,
        endpoint: str,
        budget: Budget,
        ticket: Ticket,
        bound: Any,
    ) -> RateLimited:
        """Cool the budget down for every worker; the error to raise."""
        asked = retry_after_seconds(headers.get("Retry-After"))
        try:
            cooled = await self._limiter.pauses.cool_down(
                budget,
                asked=asked,
                base=self._cooldown,
                most=self._cooldown_max,
                admitted_at=ticket.at,
                slowdown=self._slowdown,
                slowdown_for=self._slowdown_for,
            )
            pause, level, new = cooled.left, cooled.level, cooled.new
        except BudgetUnavailable as exc:
            bound.warning("market.penalize_failed", error=str(exc))
            pause, level, new = min(asked or self._cooldown, self._cooldown_max), 0, True
        bound.warning("market.rate_limited", cooldown=pause, level=level, new_cooldown=new)
        return RateLimited(text, market=self._market, endpoint=endpoint, retry_after=pause)

    async def _observe_bucket(self, headers: Mapping[str, str], budget: Budget, bound: Any) -> None:
        told = read_bucket_level(headers) if budget.bucket is not None else None
        if told is None:
            return
        try:
            added = await self._limiter.pauses.observe_bucket(budget, *told)
        except BudgetUnavailable as exc:
            bound.warning("market.bucket_level_not_shared", error=str(exc))
            return
        if added > 0:
            bound.info("market.bucket_fuller", used=told[0], size=told[1], added=added)

    async def observe(self, headers: Mapping[str, str], budget: Budget, bound: Any) -> None:
        """Adopt an advertised rate below the configured one, for every worker; a bucket's
        level the market saw above the budget's raises the budget's bucket."""
        await self._observe_bucket(headers, budget, bound)
        advertised = read_advertised(headers)
        if advertised is None or advertised.rate is None or advertised.rate <= 0:
            return
        if advertised.rate >= budget.rate:
            self._adopted.pop(budget.name, None)
            return
        previous = self._adopted.get(budget.name)
        fresh = time.monotonic() - self._advertised_ttl / 2
        if previous is not None and previous[0] == advertised.rate and previous[1] > fresh:
            return
        try:
            adopted = await self._limiter.pauses.advertise(
                budget, advertised.rate, advertised.source, self._advertised_ttl
            )
        except BudgetUnavailable as exc:
            bound.warning("market.advertised_not_shared", error=str(exc))
            return
        self._adopted[budget.name] = (advertised.rate, time.monotonic())
        if adopted and previous is None:
            bound.warning(
                "market.advertised_limit_adopted",
                source=advertised.source,
                advertised_rps=advertised.rate,
                configured_rps=budget.rate,
                ttl=self._advertised_ttl,
            )
