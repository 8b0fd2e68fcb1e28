"""Writes to the state every worker of a budget shares: the cooldown after a 429 (and
its slowdown), a quota pause, a lower limit the market advertised, and the level of
the market's bucket that another tool filled (docs/DESIGN.md rule 5).

Each is one round trip; `pause.lua` publishes a pause, so that every process's
`lanes.watch` holds its admitted requests back at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis

from lanes.budget import Budget
from lanes.protocol import US, lua, pause_call, unavailable
from lanes.watch import CHANNEL, PauseWatch

__all__ = ["Cooldown", "Pauses"]

# A budget's state hash is kept a day past its last pause or advertised limit (as
# `acquire.lua` and `pause.lua` keep it).
_STATE_DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Cooldown:
    """What a 429 did: the pause left (s), the escalation level, whether it began a new one."""

    left: float
    level: int
    new: bool


class Pauses:
    """The shared-state writes of one process (`Limiter.pauses`); `watch` learns this
    process's own pauses at once, before the round trip that tells the others."""

    def __init__(self, client: aioredis.Redis, watch: PauseWatch) -> None:
        self._client = client
        self._watch = watch
        self._pause = client.register_script(lua("pause.lua"))
        self._bucket = client.register_script(lua("bucket.lua"))
        self.cooldown_source = self._pause.script

    async def cool_down(
        self,
        budget: Budget,
        *,
        asked: float | None,
        base: float,
        most: float,
        admitted_at: float,
        slowdown: float = 1.0,
        slowdown_for: float = 0.0,
    ) -> Cooldown:
        """A 429 for the request admitted at `admitted_at` (Redis s): pause the budget for
        every worker. `asked` is the market's Retry-After; without it base x 2^level.
        Escalates once per cooldown, never past `most`; a new cooldown also multiplies the
        budget's rate by `slowdown`, which doubles back every `slowdown_for` seconds from
        the cooldown's end (see `lanes/pause.lua`)."""
        # This process stops at once, before the round trip that tells the others.
        self._watch.note(budget.name, min(base if asked is None else asked, most))
        reply = await self._run_pause(
            budget,
            "rate",
            asked_ms=-1 if asked is None else round(min(asked, most) * 1000),
            base_ms=round(base * 1000),
            most_ms=round(most * 1000),
            admitted_us=round(admitted_at * US) if math.isfinite(admitted_at) else 2**62,
            slowdown_ppm=round(min(1.0, max(0.0, slowdown)) * US),
            slowdown_ms=round(slowdown_for * 1000),
        )
        left, level, new = (int(value) for value in reply)
        return Cooldown(left / 1000, level, bool(new))

    async def penalize(self, budget: Budget, seconds: float) -> float:
        """Pause `budget` for every worker for `seconds` (a 429 with a known Retry-After)."""
        cooled = await self.cool_down(
            budget, asked=seconds, base=seconds, most=seconds, admitted_at=math.inf
        )
        return cooled.left

    async def pause_for_quota(self, budget: Budget, seconds: float) -> float:
        """The budget's quota is spent: no worker sends on it for `seconds`."""
        reply = await self._run_pause(budget, "quota", asked_ms=max(1, round(seconds * 1000)))
        return int(reply[0]) / 1000

    async def _run_pause(self, budget: Budget, kind: str, **numbers: int) -> list[int]:
        keys, args = pause_call(budget, kind, CHANNEL, **numbers)
        with unavailable(budget):
            reply: list[int] = await self._pause(keys=keys, args=args)
        self._watch.note(budget.name, int(reply[0]) / 1000)
        return reply

    async def advertise(self, budget: Budget, rate: float, source: str, ttl: float) -> bool:
        """A market advertised `rate` (requests/s): below the configured rate, every
        worker's budget adopts it for `ttl` seconds (a slowdown after a 429 still applies
        where it is lower). Returns whether it was adopted."""
        ratio = rate / budget.rate
        if not math.isfinite(ratio) or ratio >= 1.0 or ratio <= 0:
            return False
        # The state outlives the advertised limit by a day, as a pause's does; a state this
        # call makes (none yet: a budget that never acquired) gets that expiry too.
        keep_ms = round((ttl + _STATE_DAY_S) * 1000)
        with unavailable(budget):
            (seconds, micros) = await self._client.time()
            until = seconds * US + micros + round(ttl * US)
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    budget.state_key,
                    mapping={
                        "adv_ppm": max(1, math.floor(ratio * US)),
                        "adv_until": until,
                        "adv_source": source,
                    },
                )
                pipe.pttl(budget.state_key)
                _, left_ms = await pipe.execute()
            if left_ms < keep_ms:  # never shortened: a long quota pause may need more
                await self._client.pexpire(budget.state_key, keep_ms)
        return True

    async def observe_bucket(self, budget: Budget, used: int, size: int) -> float:
        """The market told its bucket's level, `used` of `size` calls: where that is more
        than this budget's bucket holds (another tool of the seller's), every worker's
        bucket is raised by the difference (`lanes/bucket.lua`). Returns the calls added."""
        if budget.bucket is None or size <= 0:
            return 0.0
        level = used * budget.bucket.size / size  # the market's size may differ from ours
        interval_us = math.ceil(US / budget.bucket.refill_per_second)
        with unavailable(budget):
            added = await self._bucket(keys=[budget.bucket_key], args=[level, interval_us])
        return int(added) / 1000
