"""The budget's storage: runs `lanes.budget` checks atomically in Redis.

One Lua script call (one round trip) per acquire, and in `wait` one per batch
of this process's concurrent requests. Time is the Redis server's `TIME`, so
any number of workers on any number of machines share one clock.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lanes.batcher import AcquireBatcher, Grant
from lanes.budget import Admission, Budget
from lanes.errors import BudgetTimeout, BudgetUnavailable
from lanes.policy import DEFAULT_POLICIES, Lane, LanePolicies

__all__ = ["BudgetUsage", "Limiter"]

_US = 1_000_000
# A refused acquire sleeps its exact wait plus up to this much, so that callers
# refused at one moment do not all come back at one moment.
_JITTER_S = 0.02


def _lua(name: str) -> str:
    return resources.files("lanes").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """A budget's live state: requests in the trailing window and reservations ahead, by lane."""

    name: str
    in_window: dict[Lane, int]
    reserved: dict[Lane, int]
    cooldown: float


class Limiter:
    """Admits requests to shared budgets held in Redis.

    The caller owns the Redis client (see `lanes.store.RedisStore`); every Redis
    failure is raised as `BudgetUnavailable`: nothing is admitted without Redis.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        policies: LanePolicies = DEFAULT_POLICIES,
        *,
        horizon: float = 30.0,
    ) -> None:
        self._client = client
        self._policies = policies
        self._horizon = horizon
        self._acquire = client.register_script(_lua("acquire.lua"))
        self._penalize = client.register_script(_lua("penalize.lua"))
        self._usage = client.register_script(_lua("usage.lua"))
        self._keep_us: dict[str, int] = {}
        self._batcher = AcquireBatcher(self._submit, self.release)

    def _keep(self, budget: Budget) -> int:
        # Entries matter for as long as the longest span of any lane's checks.
        keep = self._keep_us.get(budget.name)
        if keep is None:
            keep = max(
                check.span_us
                for lane in Lane
                for check in budget.checks(self._policies[lane].ceiling)
            )
            self._keep_us[budget.name] = keep
        return keep

    async def acquire(
        self,
        budget: Budget,
        lane: Lane,
        cost: int = 1,
        *,
        max_wait: float | None = None,
    ) -> Admission:
        """Admit `cost` requests in `lane` now, or reserve the earliest moment within `max_wait`.

        Reservations reach at most the limiter's horizon (high) or one window (lanes
        with a ceiling below 1). Not granted: nothing was recorded, and the answer's
        `wait` is how long until asking again can succeed.
        """
        (grant,) = await self._submit(budget, lane, [cost], max_wait)
        return grant.admission

    async def _submit(
        self,
        budget: Budget,
        lane: Lane,
        costs: Sequence[int],
        max_wait: float | None = None,
    ) -> list[Grant]:
        for cost in costs:
            if not 1 <= cost <= budget.capacity:
                raise ValueError(
                    f"cost {cost} outside 1..{budget.capacity} for budget {budget.name}"
                )
        ceiling = self._policies[lane].ceiling
        checks = budget.checks(ceiling)
        horizon = self._horizon
        if ceiling < 1.0:
            # Reservations far ahead would hold windows the paid lane may need (with a
            # limit of 1/s every reserved second is one high cannot use): one window only.
            horizon = min(horizon, budget.shortest_seconds)
        if max_wait is not None:
            horizon = min(horizon, max(0.0, max_wait))
        prefix = f"{lane.value}:{secrets.token_hex(6)}"
        args: list[int | str] = [round(horizon * _US), prefix, self._keep(budget), len(checks)]
        for check in checks:
            args += [check.cap, check.span_us]
        args += [len(costs), *costs]
        try:
            flat = await self._acquire(keys=[budget.log_key, budget.cooldown_key], args=args)
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"budget {budget.name}: redis unavailable: {exc}") from exc
        grants = []
        for index, cost in enumerate(costs):
            granted, wait_us, moment_us = flat[3 * index : 3 * index + 3]
            members = tuple(f"{prefix}:{index + 1}:{unit}" for unit in range(1, cost + 1))
            admission = Admission(bool(granted), int(wait_us) / _US, int(moment_us) / _US)
            grants.append(Grant(admission, members if granted else ()))
        return grants

    async def wait(
        self,
        budget: Budget,
        lane: Lane,
        cost: int = 1,
        *,
        deadline: float | None = None,
    ) -> float:
        """Sleep until `cost` requests are admitted; returns the seconds spent waiting.

        Concurrent waits of this process on one budget and lane share round trips
        (see `lanes.batcher`). `deadline` is a `time.monotonic()` moment: when
        admission cannot come before it, `BudgetTimeout` is raised at once (no
        pointless sleep). A reservation given up by cancellation is handed back.
        """
        started = time.monotonic()
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise BudgetTimeout(budget.name, 0.0)
            grant = await self._batcher.request(budget, lane, cost)
            admission = grant.admission
            if admission.granted:
                if deadline is not None and time.monotonic() + admission.wait > deadline:
                    await self.release(budget, grant.members)
                    raise BudgetTimeout(budget.name, admission.wait)
                await self._sleep_reserved(budget, admission.wait, grant.members)
                return time.monotonic() - started
            pause = admission.wait + random.uniform(0, _JITTER_S)
            if deadline is not None and time.monotonic() + pause > deadline:
                raise BudgetTimeout(budget.name, admission.wait)
            await asyncio.sleep(pause)

    async def _sleep_reserved(self, budget: Budget, seconds: float, members: Sequence[str]) -> None:
        if seconds <= 0:
            return
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            # Unused reservations would block the budget for nobody's benefit.
            await self.release(budget, members)
            raise

    async def release(self, budget: Budget, members: Sequence[str]) -> None:
        """Hand back reservations that will not be used (best effort)."""
        if not members:
            return
        try:
            await self._client.zrem(budget.log_key, *members)
        except (RedisError, OSError):
            return  # the reservation then only wastes its slot: never unsafe

    async def penalize(self, budget: Budget, seconds: float) -> float:
        """Pause `budget` for every worker for `seconds` (a 429 from the market)."""
        try:
            left_ms = await self._penalize(
                keys=[budget.cooldown_key], args=[max(1, round(seconds * 1000))]
            )
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"budget {budget.name}: redis unavailable: {exc}") from exc
        return int(left_ms) / 1000

    async def usage(self, budget: Budget) -> BudgetUsage:
        """Requests in the budget's first window right now, and reservations ahead, by lane."""
        span_us = round(budget.windows[0].seconds * _US)
        try:
            reply = await self._usage(keys=[budget.log_key, budget.cooldown_key], args=[span_us])
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"budget {budget.name}: redis unavailable: {exc}") from exc
        now, cooldown_ms, *flat = reply
        in_window: Counter[Lane] = Counter()
        reserved: Counter[Lane] = Counter()
        for member, score in zip(flat[::2], flat[1::2], strict=True):
            lane = Lane(member.decode().split(":", 1)[0])
            (reserved if float(score) > int(now) else in_window)[lane] += 1
        return BudgetUsage(
            name=budget.name,
            in_window={lane: in_window[lane] for lane in Lane},
            reserved={lane: reserved[lane] for lane in Lane},
            cooldown=max(0, int(cooldown_ms)) / 1000,
        )
