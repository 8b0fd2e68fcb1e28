"""The Redis-held budget: admission, exact waits, reservations, cooldown, failing closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from lanes import Budget, BudgetTimeout, BudgetUnavailable, Lane, Limiter, Window
from tests.conftest import OwnRedis
from tests.windows import over_limit_windows

MakeLimiter = Callable[..., Limiter]
MakeBudget = Callable[..., Budget]


async def test_admits_up_to_the_limit_then_refuses_with_exact_wait(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """Within a window the limit is admitted at once; the next gets the time until a slot frees."""
    limiter, budget = make_limiter(), make_budget(5, 1.0)
    first = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
    for _ in range(4):
        assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted
    refused = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
    assert not refused.granted
    assert refused.at == pytest.approx(first.at + 1.0, abs=1e-6)
    assert 0.9 < refused.wait <= 1.0


async def test_refusal_records_nothing(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """A refused acquire leaves the log as it was."""
    limiter, budget = make_limiter(), make_budget(2, 1.0)
    for _ in range(5):
        await limiter.acquire(budget, Lane.HIGH, max_wait=0)
    assert await redis_client.zcard(budget.log_key) == 2


async def test_reservation_admits_at_a_future_moment(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """Within its horizon, a full budget reserves the earliest moment rather than refusing."""
    limiter, budget = make_limiter(horizon=5.0), make_budget(2, 0.5)
    first = await limiter.acquire(budget, Lane.HIGH)
    await limiter.acquire(budget, Lane.HIGH)
    third = await limiter.acquire(budget, Lane.HIGH)
    assert third.granted
    assert third.at == pytest.approx(first.at + 0.5, abs=1e-6)


async def _acquires(client: aioredis.Redis) -> int:
    """Acquire round trips so far on the test's own Redis (the budget's one script)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_wait_sleeps_exactly_and_returns_the_time_waited(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """`wait` returns once admitted, having slept the reserved time (never less) on one
    acquire round trip: not polled."""
    limiter, budget = make_limiter(), make_budget(1, 0.3)
    await limiter.wait(budget, Lane.HIGH)
    before = await _acquires(redis_client)
    waited = await limiter.wait(budget, Lane.HIGH)
    assert waited > 0.25
    assert await _acquires(redis_client) - before == 1


async def test_wait_raises_at_once_when_the_deadline_is_too_near(
    make_limiter: MakeLimiter, make_budget: MakeBudget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deadline before any possible admission raises BudgetTimeout with the time to retry,
    without sleeping towards it first."""
    limiter, budget = make_limiter(), make_budget(1, 5.0)
    await limiter.wait(budget, Lane.HIGH)
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float, *args: object) -> None:
        slept.append(seconds)
        await real_sleep(seconds, *args)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    with pytest.raises(BudgetTimeout) as caught:
        await limiter.wait(budget, Lane.HIGH, deadline=time.monotonic() + 0.2)
    assert [seconds for seconds in slept if seconds > 0] == []
    assert caught.value.retry_after > 4


async def test_cooldown_pauses_every_lane_for_every_worker(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """After penalize, any limiter on the budget is refused until the cooldown ends."""
    budget = make_budget(100, 1.0)
    one, other = make_limiter(), make_limiter()
    assert await one.pauses.penalize(budget, 0.4) == pytest.approx(0.4)
    refused = await other.acquire(budget, Lane.HIGH)
    assert not refused.granted
    assert 0.3 < refused.wait <= 0.4
    waited = await other.wait(budget, Lane.HIGH)
    assert waited > 0.3


async def test_penalize_keeps_a_longer_cooldown(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """A shorter penalty does not cut a longer running cooldown short."""
    limiter, budget = make_limiter(), make_budget()
    await limiter.pauses.penalize(budget, 5.0)
    assert await limiter.pauses.penalize(budget, 1.0) > 4.0
    assert (await limiter.usage.read(budget)).cooldown > 4.0


async def test_usage_counts_by_lane(make_limiter: MakeLimiter, make_budget: MakeBudget) -> None:
    """Usage reports the requests in the window and the reservations ahead, by lane."""
    limiter, budget = make_limiter(), make_budget(3, 1.0)
    await limiter.acquire(budget, Lane.LOW)
    await limiter.acquire(budget, Lane.MEDIUM)
    await limiter.acquire(budget, Lane.HIGH)
    await limiter.acquire(budget, Lane.HIGH)
    usage = await limiter.usage.read(budget)
    assert usage.in_window == {Lane.HIGH: 1, Lane.MEDIUM: 1, Lane.LOW: 1}
    assert usage.reserved == {Lane.HIGH: 1, Lane.MEDIUM: 0, Lane.LOW: 0}


async def test_cancelled_reservation_is_handed_back(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """A task cancelled while it sleeps towards its reservation frees the reserved slot."""
    limiter, budget = make_limiter(), make_budget(1, 2.0)
    await limiter.wait(budget, Lane.HIGH)
    sleeper = asyncio.create_task(limiter.wait(budget, Lane.HIGH))
    await asyncio.sleep(0.1)
    assert await redis_client.zcard(budget.log_key) == 2
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    assert await redis_client.zcard(budget.log_key) == 1


async def test_cost_must_fit_the_budget(make_limiter: MakeLimiter, make_budget: MakeBudget) -> None:
    """Asking for more than the smallest window's limit at once is a programming error."""
    with pytest.raises(ValueError, match="outside"):
        await make_limiter().acquire(make_budget(3), Lane.HIGH, cost=4)


async def test_cost_must_fit_the_lanes_ceiling(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """A cost the budget holds but the lane's ceiling does not (on low, more than its share
    of the window) is refused with one clear line, before Redis: the script could never
    place it (it used to fail inside the script)."""
    limiter, budget = make_limiter(), make_budget(10)
    room = min(check.cap for check in budget.checks(0.7))
    with pytest.raises(ValueError, match=f"over the {room} the low lane may hold"):
        await limiter.acquire(budget, Lane.LOW, cost=room + 1)
    assert (await limiter.acquire(budget, Lane.LOW, cost=room)) is not None


async def test_budget_keys_expire_on_their_own(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """The log carries a TTL a little longer than its longest span (5 s to spare, and
    10 s more so that the grants after it need not set it again): idle budgets vanish."""
    limiter, budget = make_limiter(), make_budget(1, 1.0)
    await limiter.acquire(budget, Lane.LOW)
    ttl = await redis_client.pttl(budget.log_key)
    assert 10_000 < ttl <= 25_000  # low's span for 0.7 x 1/s is 10 s
    assert await redis_client.pttl(budget.state_key) == pytest.approx(ttl, abs=50)


async def test_a_busy_budget_sets_its_expiry_once_per_slack(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """A grant the remembered expiry (`log_until`) still covers sets none: twenty grants in
    a row set the log's expiry once, and it still covers the newest entry's windows."""
    limiter, budget = make_limiter(), make_budget(100, 1.0)
    await limiter.acquire(budget, Lane.HIGH)
    remembered = await redis_client.hget(budget.state_key, "log_until")
    first_ttl = await redis_client.pttl(budget.log_key)
    for _ in range(20):
        assert (await limiter.acquire(budget, Lane.HIGH)).granted
    assert await redis_client.hget(budget.state_key, "log_until") == remembered
    ttl = await redis_client.pttl(budget.log_key)
    assert 6_000 < ttl <= first_ttl  # the 1 s window plus 5 s past the newest entry


async def test_redis_down_fails_closed_then_recovers(
    make_budget: MakeBudget, own_redis: OwnRedis
) -> None:
    """With Redis gone, acquire raises BudgetUnavailable (nothing admitted); it resumes after."""
    budget = make_budget(10, 1.0)
    limiter = Limiter(own_redis.store.client)
    assert (await limiter.acquire(budget, Lane.HIGH)).granted
    own_redis.server.stop()
    with pytest.raises(BudgetUnavailable, match="redis unavailable"):
        await limiter.acquire(budget, Lane.HIGH)
    with pytest.raises(BudgetUnavailable):
        await limiter.wait(budget, Lane.HIGH)
    own_redis.server.start()
    assert (await limiter.acquire(budget, Lane.HIGH)).granted


async def _keys_without_expiry(client: aioredis.Redis) -> list[str]:
    """Every budget key in the test Redis that would live forever. The slots' epochs
    (`lanes.epoch`, 16384 at most) are meant to: they are the proof of continuity."""
    return [
        key.decode()
        async for key in client.scan_iter(match="lanes:*")
        if not key.startswith(b"lanes:epoch:") and await client.pttl(key) < 0
    ]


async def test_every_budget_key_expires_on_every_write_path(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """2,000 one-call sellers must not leave 2,000 keys forever: a log emptied by a
    give-back and made anew (on its own, or by the give-back's own round trip) gets its
    expiry again, as does a state made by an advertised limit or a pause; the scan of
    the whole test Redis finds no budget key without one."""
    limiter = make_limiter()
    sellers = [make_budget(10, 1.0, name=f"acme:orders:seller-{index}") for index in range(6)]
    for budget in sellers:
        ticket = await limiter.admit(budget, Lane.HIGH)
        await limiter.release(budget, ticket.members)  # the log is empty: gone
        await limiter.admit(budget, Lane.HIGH)  # and made anew
    given_back = sellers[0]
    (grant,) = await limiter._submit(given_back, [(Lane.HIGH, 1)])
    await limiter._submit(given_back, [(Lane.HIGH, 1)], grant.members)  # in one round trip
    await limiter.pauses.advertise(
        make_budget(10, 1.0, name="acme:advertised"), 5, "X-Test", ttl=60
    )
    await limiter.pauses.pause_for_quota(make_budget(10, 1.0, name="acme:quota"), 1.0)
    await limiter.pauses.cool_down(
        make_budget(10, 1.0, name="acme:cooled"), asked=None, base=0.1, most=1.0, admitted_at=0
    )
    assert await _keys_without_expiry(redis_client) == []


async def test_the_first_admit_warms_up_before_its_first_grant(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """A cold process loads its scripts and sharpens its clock before asking: its first
    grant is not slowed by a script load nor judged late on an uncertain clock."""
    await redis_client.script_flush()
    limiter, budget = make_limiter(), make_budget(5, 1.0, margin_ms=25)
    ticket = await limiter.admit(budget, Lane.HIGH)
    assert ticket.may_send()
    assert all(await redis_client.script_exists(limiter._acquire.sha, limiter.pauses._pause.sha))
    low, high = limiter.clock.bounds()
    assert high - low <= limiter.tolerance(budget) / 2


async def test_a_caller_woken_ahead_still_never_sends_before_its_moment(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """With a learned wake-up lead (a loop that wakes its sleepers late), callers wake
    ahead of their reserved moments and wait the rest: each leaves at or after its
    moment as surely reached on this process's clock, never before."""
    limiter, budget = make_limiter(), make_budget(5, 0.2, margin_ms=25)
    limiter.wake_lead.seconds = 0.0075
    for _ in range(15):
        ticket = await limiter.admit(budget, Lane.HIGH)
        assert time.monotonic() >= ticket.at + limiter.clock.bounds()[1]


async def test_a_slot_whose_caller_wakes_late_is_sent_by_another_caller(
    make_limiter: MakeLimiter, make_budget: MakeBudget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller sleeping on a reservation has not woken by half its tolerance past the
    moment (a busy loop); another caller of the process, about to ask, sends on that
    reservation instead, within the tolerance and without a round trip. The owner,
    waking, asks anew: the slot is not lost, and no entry is used twice."""
    limiter, budget = make_limiter(tolerance=1.0), make_budget(1, 0.5)
    assert (await limiter.acquire(budget, Lane.HIGH)).granted  # the window is full
    sleep_until = limiter._sleep_until
    drowsy = asyncio.Event()

    async def late_owner(*args: Any, **options: Any) -> None:
        await sleep_until(*args, **options)
        if not drowsy.is_set():
            drowsy.set()
            await asyncio.sleep(0.9)  # wakes 0.9 s past its moment: past half the tolerance

    monkeypatch.setattr(limiter, "_sleep_until", late_owner)
    owner = asyncio.create_task(limiter.admit(budget, Lane.HIGH))
    await drowsy.wait()  # its moment came; it has not woken
    await asyncio.sleep(0.6)
    handed = await limiter.admit(budget, Lane.HIGH)
    assert limiter.lateness.counts.get("handed") == 1
    assert handed.may_send()
    again = await owner
    assert set(again.members).isdisjoint(handed.members)
    assert again.at >= handed.at + 0.5


async def test_refused_callers_of_a_lane_share_one_ask_and_never_poll(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """Twenty low callers of one process, each admitted three times, on a budget whose
    low ceiling admits 7 per 0.2 s: the lane is booked a window ahead, so callers that
    it refuses (and callers arriving while it is booked) wait together for the moment
    it has room and ask in one round trip. Each refused caller used to sleep its own
    exact wait (plus jitter) and ask alone, about one round trip per served request;
    the lane's ceiling holds in every window either way."""
    limiter, budget = make_limiter(), make_budget(10, 0.2)
    await limiter.warm_up()
    before = await _acquires(redis_client)

    async def caller(index: int) -> list[float]:
        moments = []
        for _ in range(3):
            moments.append((await limiter.admit(budget, Lane.LOW)).at)
            await asyncio.sleep(0.005 * index)  # its request: answers come back spread
        return moments

    called = await asyncio.gather(*(caller(index) for index in range(20)))
    moments = [at for each in called for at in each]
    trips = await _acquires(redis_client) - before
    assert trips <= 10  # 19 before: about one per served request past the first
    assert over_limit_windows(moments, Window(limit=7, seconds=0.2)) == 0


async def test_a_warmed_up_process_reads_no_state_when_its_reservations_wake(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """Warming up also makes the pause subscription live, so a reservation granted after
    it is confirmed at wake time by the subscription alone: no state read (HMGET) per
    reservation. Before, a process's first reservations were granted before its
    subscription was live and each read the state when it woke."""
    limiter, budget = make_limiter(), make_budget(1, 0.2)
    await limiter.warm_up()
    await redis_client.config_resetstat()
    for _ in range(3):  # the second and third wait for their moments
        await limiter.admit(budget, Lane.HIGH)
    assert "cmdstat_hmget" not in await redis_client.info("commandstats")
