"""Reads a budget's live state without changing it (`lanes status`, the board, tests):
requests in its first window and reservations ahead by lane, its pauses, and its
effective limit with where that comes from."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import redis.asyncio as aioredis

from lanes.budget import Budget
from lanes.policy import Lane
from lanes.protocol import US, advertised_scale, lua, member_lane, slow_scale, unavailable

__all__ = ["BudgetUsage", "Usage"]


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """A budget's live state: requests in the trailing window and reservations ahead, by
    lane; the 429 cooldown and quota pause left (s) and the cooldown level; the effective
    limit of the first window and where it comes from ("configured" or an advertised
    header family, `advertised_for` seconds more)."""

    name: str
    in_window: dict[Lane, int]
    reserved: dict[Lane, int]
    cooldown: float
    quota_pause: float = 0.0
    level: int = 0
    limit: int = 0
    limit_source: str = "configured"
    advertised_for: float = 0.0


class Usage:
    """`read(budget)`: one round trip (`usage.lua`)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._usage = client.register_script(lua("usage.lua"))

    async def read(self, budget: Budget) -> BudgetUsage:
        """Requests in the budget's first window right now, reservations ahead by lane,
        pauses, and the effective limit with its source."""
        configured, seconds = budget.shown
        span_us = round(seconds * US)
        with unavailable(budget):
            reply = await self._usage(keys=[budget.log_key, budget.state_key], args=[span_us])
        now, flat_state, *flat = reply
        now = int(now)
        state = {
            key.decode(): value.decode()
            for key, value in zip(flat_state[::2], flat_state[1::2], strict=True)
        }
        in_window: Counter[Lane] = Counter()
        reserved: Counter[Lane] = Counter()
        for entry, score in zip(flat[::2], flat[1::2], strict=True):
            (reserved if float(score) > now else in_window)[member_lane(entry.decode())] += 1

        def left(name: str) -> float:
            return max(0, int(state.get(name, "0")) - now) / US

        limit, source = configured, "configured"
        advertised = advertised_scale(state, now)
        if advertised is not None:
            limit = max(1, math.floor(configured * advertised / US))
            source = state.get("adv_source", "advertised")
        slowed = slow_scale(state, now)
        if slowed is not None:  # the slowdown after a 429, as acquire.lua applies it
            slowed_limit = max(1, math.floor(configured * slowed / US))
            if slowed_limit < limit:
                limit, source = slowed_limit, "429"
        return BudgetUsage(
            name=budget.name,
            in_window={lane: in_window[lane] for lane in Lane},
            reserved={lane: reserved[lane] for lane in Lane},
            cooldown=left("cool_until"),
            quota_pause=left("quota_until"),
            level=int(state.get("level", "0")),
            limit=limit,
            limit_source=source,
            advertised_for=left("adv_until"),
        )
