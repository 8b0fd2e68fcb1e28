"""The bucket in the budget (GCRA, lanes/acquire.lua's BUCKET block): a burst of `size`,
then `refill_per_second`, exact waits, lane ceilings on the level, lost state counts as
full. Time is Redis's own: the values are checked against the moments it admitted."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from lanes import Budget, Lane, Limiter
from lanes.config import Bucket
from lanes.epoch import mark_epochs

MakeLimiter = Callable[..., Limiter]

_STEP = 0.5  # seconds per call at 2/s


def _bucket(size: int = 4, refill: float = 2.0, *, margin_ms: float = 0.0) -> Budget:
    return Budget(
        "cafe24:orders:mall-1",
        (),
        margin_ms=margin_ms,
        bucket=Bucket(size=size, refill_per_second=refill),
    )


async def test_a_full_burst_then_the_exact_refill_wait(make_limiter: MakeLimiter) -> None:
    """An empty bucket of 4 admits 4 at once; the 5th is told to come back exactly one
    refill (0.5 s) after the first, and nothing is recorded for it."""
    limiter, budget = make_limiter(), _bucket()
    first = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
    for _ in range(3):
        granted = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
        assert granted.granted
        assert granted.wait == 0
    refused = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
    assert not refused.granted
    assert refused.at == pytest.approx(first.at + _STEP, abs=1e-6)


async def test_no_lane_reserves_in_a_bucket(make_limiter: MakeLimiter) -> None:
    """Past the burst even high, with a long horizon, is refused and told the exact
    moment of the next refill (a reservation would raise the level now); admitted
    then (or a little later: the jitter), the next is told the refill after, one
    interval on from the first refill: a caller coming back late loses no refill."""
    limiter, budget = make_limiter(horizon=10.0), _bucket()
    first = await limiter.acquire(budget, Lane.HIGH)
    for _ in range(3):
        await limiter.acquire(budget, Lane.HIGH)
    refused = await limiter.acquire(budget, Lane.HIGH)
    assert not refused.granted
    assert refused.at == pytest.approx(first.at + _STEP, abs=1e-6)
    ticket = await limiter.admit(budget, Lane.HIGH)
    assert ticket.at >= first.at + _STEP
    after = await limiter.acquire(budget, Lane.HIGH)
    assert after.at == pytest.approx(first.at + 2 * _STEP, abs=1e-6)


async def test_a_lower_lane_fills_the_bucket_only_to_its_ceiling(
    make_limiter: MakeLimiter,
) -> None:
    """Low (0.7) fills a bucket of 10 to 7 and is then refused (no reservation: it
    would raise the level high must find free), told exactly when one call has
    drained; high still finds the other 3 at once."""
    limiter, budget = make_limiter(horizon=10.0), _bucket(10)
    first = await limiter.acquire(budget, Lane.LOW)
    for _ in range(6):
        assert (await limiter.acquire(budget, Lane.LOW)).granted
    refused = await limiter.acquire(budget, Lane.LOW)
    assert not refused.granted
    assert refused.at == pytest.approx(first.at + _STEP, abs=1e-6)
    for _ in range(3):
        high = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
        assert high.granted
        assert high.wait == 0
    assert not (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted


async def test_the_margin_narrows_the_bucket(make_limiter: MakeLimiter) -> None:
    """A margin of 100 ms: the 4th call of a bucket of 4 waits 100 ms, so arrivals
    spread by the margin never fill the market's bucket past its size."""
    limiter, budget = make_limiter(horizon=10.0), _bucket(margin_ms=100)
    first = await limiter.acquire(budget, Lane.HIGH)
    for _ in range(2):
        assert (await limiter.acquire(budget, Lane.HIGH)).wait == 0
    fourth = await limiter.acquire(budget, Lane.HIGH)
    assert fourth.at == pytest.approx(first.at + 0.1, abs=1e-6)


async def test_a_lost_bucket_counts_as_full(
    make_limiter: MakeLimiter, redis_client: aioredis.Redis
) -> None:
    """After a FLUSHALL the bucket's past is unknown: it starts full (rule 10), so
    the first call waits one refill and no burst follows; a budget new on a Redis
    known for a drain's time starts with its whole burst."""
    limiter = make_limiter(restart_guard=True)
    budget = _bucket()
    await mark_epochs(redis_client)
    run, since = (await redis_client.get(budget.epoch_key)).decode().split(":")
    await redis_client.set(budget.epoch_key, f"{run}:{int(since) - 3_000_000}")
    for _ in range(4):
        assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).wait == 0
    await redis_client.flushall()
    refused = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
    assert not refused.granted
    assert refused.wait == pytest.approx(_STEP, abs=1e-3)


async def test_the_bucket_key_expires_when_it_would_be_empty(
    make_limiter: MakeLimiter, redis_client: aioredis.Redis
) -> None:
    """The bucket's key lives until the bucket would be empty, plus 5 s."""
    limiter, budget = make_limiter(), _bucket()
    for _ in range(4):
        await limiter.acquire(budget, Lane.HIGH)
    ttl = await redis_client.pttl(budget.bucket_key)
    assert 5_000 < ttl <= 7_000
    assert budget.bucket_key.startswith("lanes:{cafe24:orders:mall-1}")


async def test_a_late_call_moved_to_now_is_not_spent_twice(make_limiter: MakeLimiter) -> None:
    """A ticket found late at the socket moves to now (`Ticket.renew`): its given-back
    call lends the bucket its room, so the move costs the shift, not a second call; a
    bucket of 2 still has room for one more call after it."""
    limiter, budget = make_limiter(tolerance=1.0), _bucket(2)
    ticket = await limiter.admit(budget, Lane.HIGH)
    assert await ticket.renew()
    assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted
    assert not (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted


async def test_a_late_call_that_cannot_move_returns_its_room(make_limiter: MakeLimiter) -> None:
    """Low fills a bucket of 4 to its 2, high takes the other 2; low's tickets, found
    late, cannot move (the level is past low's cap) but their calls never left: their
    room goes back to the bucket, and high finds 2 calls at once (a burst that woke late
    on a loaded host is not lost)."""
    limiter, budget = make_limiter(tolerance=1.0), _bucket()
    low = [await limiter.admit(budget, Lane.LOW) for _ in range(2)]
    for _ in range(2):
        assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted
    for ticket in low:
        assert not await ticket.renew()
    for _ in range(2):
        assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted
    assert not (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted


async def test_a_returned_call_leaves_what_the_later_calls_make(
    make_limiter: MakeLimiter, redis_client: aioredis.Redis
) -> None:
    """Taken out, a call leaves the level the calls after it make alone when that is
    more than the level minus one call: a bucket that drained between them must not
    count the later calls as drained too. With nothing draining (1 call per 1000 s),
    the bucket then holds the 2 calls after it from the first of them."""
    limiter, budget = make_limiter(tolerance=1.0), _bucket(refill=0.001)
    ticket = await limiter.admit(budget, Lane.LOW)
    later = [await limiter.acquire(budget, Lane.HIGH, max_wait=0) for _ in range(2)]
    assert not await ticket.renew()  # low's 2 calls are taken: it cannot move
    held = (await redis_client.get(budget.bucket_key)).decode()
    interval_us = 1_000_000_000
    assert int(held.split(":")[0]) == round(later[0].at * 1_000_000) + 2 * interval_us


async def test_a_call_given_back_from_before_a_raise_returns_nothing(
    make_limiter: MakeLimiter,
) -> None:
    """The market's header raised the level after a call was admitted: the market's level
    never held that call, so giving it back returns nothing (it would count twice)."""
    limiter, budget = make_limiter(tolerance=1.0), _bucket()
    ticket = await limiter.admit(budget, Lane.LOW)
    assert await limiter.pauses.observe_bucket(budget, 4, 4) > 0  # another tool's calls
    assert not await ticket.renew()
    assert not (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted


async def test_a_bucket_alone_shows_its_size_over_its_drain(make_limiter: MakeLimiter) -> None:
    """`lanes status` reads a bucket-only budget as its size over its drain time (no
    window to show), with the calls of that span by lane."""
    limiter, budget = make_limiter(), _bucket()
    await limiter.acquire(budget, Lane.LOW)
    usage = await limiter.usage.read(budget)
    assert budget.shown == (4, 2.0)
    assert usage.limit == 4
    assert usage.in_window[Lane.LOW] == 1
