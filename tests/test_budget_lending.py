"""Lending idle headroom (issue 20; docs/DESIGN.md rule 2, "Lending"), on a real Redis.

With `lend_idle`, a lane goes past its ceiling while no higher lane has called within
the shortest window; a higher lane's call holds the lower lanes to their ceilings again
at once, and what was lent costs it at most one shortest window. The clock is Redis's
`TIME`: windows of 10 s make the test's own run time irrelevant, and the passing of a
demand mark's hold is played by writing the mark into the past (the fake clock).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import redis.asyncio as aioredis

from lanes import Budget, Lane, Limiter

MakeLimiter = Callable[..., Limiter]
MakeBudget = Callable[..., Budget]

_US = 1_000_000


async def _served(limiter: Limiter, budget: Budget, lane: Lane, most: int = 50) -> int:
    """How many `lane` requests are admitted at once before the first refusal."""
    for served in range(most):
        admission = await limiter.acquire(budget, lane, max_wait=0.0)
        if not admission.granted:
            return served
    return most


def _lending(budget: Budget) -> Budget:
    return dataclasses.replace(budget, lend_idle=True)


async def test_without_lending_low_alone_stops_at_its_ceiling(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """The default: low alone holds the market at 70 % of the limit."""
    assert await _served(make_limiter(), make_budget(10, 10.0), Lane.LOW) == 7


async def test_low_alone_may_use_the_whole_limit(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """No higher lane has called: low is lent the 30 % above its ceiling, never more
    than the market's limit."""
    assert await _served(make_limiter(), _lending(make_budget(10, 10.0)), Lane.LOW) == 10


async def test_a_high_call_holds_low_to_its_ceiling_at_once(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """High's first call marks its demand: low's next acquire is held to 70 % of the
    total again, and high keeps the rest."""
    limiter, budget = make_limiter(), _lending(make_budget(10, 10.0))
    assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0.0)).granted
    assert await _served(limiter, budget, Lane.LOW) == 6
    assert await _served(limiter, budget, Lane.HIGH) == 3


async def test_medium_holds_low_but_lends_itself_while_high_is_away(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """Each lane is held only by the lanes above it: medium's call holds low at 70 %,
    and medium, with no high demand, goes past its own 80 %."""
    limiter, budget = make_limiter(), _lending(make_budget(10, 10.0))
    assert (await limiter.acquire(budget, Lane.MEDIUM, max_wait=0.0)).granted
    assert await _served(limiter, budget, Lane.LOW) == 6
    assert await _served(limiter, budget, Lane.MEDIUM) == 3


async def test_lending_resumes_once_the_demand_mark_passed(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """The mark holds for one shortest window after high's last call; once it passed
    (written into the past here), low is lent again. The mark expires by itself."""
    limiter, budget = make_limiter(), _lending(make_budget(10, 10.0))
    assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0.0)).granted
    ttl_ms = await redis_client.pttl(budget.demand_key)
    assert 0 < ttl_ms <= budget.lend_hold_us / 1000 + 1000
    await redis_client.hset(budget.demand_key, str(_US), "1")
    assert await _served(limiter, budget, Lane.LOW) == 9


async def test_what_was_lent_costs_high_at_most_one_shortest_window(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """Low took the whole window on loan; high's burst that follows is placed within one
    shortest window (plus the margin and the lending reach) of its arrival, never later:
    nothing was lent ahead of now."""
    limiter = make_limiter()
    budget = _lending(make_budget(10, 10.0, margin_ms=25.0))
    assert await _served(limiter, budget, Lane.LOW) == 10
    bound = (budget.lend_hold_us + budget.lend_reach_us) / _US
    for _ in range(10):
        admission = await limiter.acquire(budget, Lane.HIGH)
        assert admission.granted
        assert admission.wait <= bound


async def test_a_long_window_keeps_its_ceilings(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """Only the shortest window's ceilings are lent: a loan on a long window could cost
    high that long window's wait. 10 per 10 s and 12 per 100 s: low alone reaches 8 of
    the long window's 12 (its 70 %), not the short window's 10."""
    limiter = make_limiter()
    budget = _lending(make_budget(10, 10.0, extra=((12, 100.0),)))
    assert await _served(limiter, budget, Lane.LOW) == 8
