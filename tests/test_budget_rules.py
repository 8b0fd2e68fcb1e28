"""The budget under stress (issue 8): each rule stated by a test, on a real Redis.

Late is never over (docs/DESIGN.md rule 9), a pause stops reservations granted
before it and escalates once per cooldown (rule 5), advertised lower limits are
adopted and expire, lost state counts as a full window (rule 10), and long
windows stay exact while costing rank lookups only (rule 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import RedisError

from lanes import Admission, Budget, BudgetUnavailable, Lane, Limiter, RedisStore, Window
from lanes.budget import PACE_BURST
from lanes.epoch import epoch_keys, mark_epochs
from lanes.limiter import Ticket
from scripts.local.services import RedisServer
from tests.conftest import OwnRedis
from tests.waiting import soon
from tests.windows import over_limit_windows

MakeLimiter = Callable[..., Limiter]
MakeBudget = Callable[..., Budget]


def _block_the_loop(seconds: float) -> None:
    """What a starved CPU or a blocking call does to every task of the process."""
    time.sleep(seconds)


async def _redis_now(client: aioredis.Redis) -> float:
    seconds, micros = await client.time()
    return int(seconds) + int(micros) / 1_000_000


async def test_caller_woken_past_its_tolerance_gives_back_and_asks_again(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """A reservation whose caller wakes too late (a blocked loop) is never used: its entry
    leaves the log and the caller is admitted anew, at a moment after it woke."""
    limiter, budget = make_limiter(tolerance=0.05), make_budget(2, 0.5)
    for _ in range(2):
        assert (await limiter.acquire(budget, Lane.HIGH)).granted
    waiter = asyncio.create_task(limiter.admit(budget, Lane.HIGH))
    await asyncio.sleep(0.05)  # the waiter holds a reservation about 0.45 s ahead
    reserved = await redis_client.zrange(budget.log_key, 2, 2, withscores=True)
    _block_the_loop(0.8)  # well past that moment
    woke = await _redis_now(redis_client)
    ticket = await waiter
    assert limiter.lateness.counts.get("given_back") == 1
    assert ticket.at >= woke - 0.05
    members = {
        member for member, _ in await redis_client.zrange(budget.log_key, 0, -1, withscores=True)
    }
    assert reserved[0][0] not in members
    assert ticket.may_send()


async def test_a_late_caller_is_moved_to_now_where_the_market_windows_have_room(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """In a paced budget full of reservations ahead, a late caller asking anew would join
    the end of the queue and its slot would pass unused. Where the market's window has
    room now, it is admitted at once instead (the pace is not the market's rule): the
    slot is moved, not lost, and no window of the market holds more than its limit."""
    late, others = make_limiter(tolerance=0.05), make_limiter()
    budget = make_budget(100, 1.0)
    for _ in range(60):
        assert (await others.acquire(budget, Lane.HIGH)).granted
    waiter = asyncio.create_task(late.admit(budget, Lane.HIGH))
    await asyncio.sleep(0.01)  # the waiter holds a reservation after the first 60
    for _ in range(30):
        assert (await others.acquire(budget, Lane.HIGH)).granted  # the pace full ahead
    _block_the_loop(0.7)  # past the waiter's moment, before the others' last ones
    woke = await _redis_now(redis_client)
    ticket = await waiter
    assert late.lateness.counts.get("given_back") == 1
    assert late.lateness.counts.get("moved") == 1
    assert ticket.at == pytest.approx(woke, abs=0.05)
    log = await redis_client.zrange(budget.log_key, 0, -1, withscores=True)
    moments = [score for _, score in log]
    # The slot moved, not added: the ticket's entry is in the log, its old one gone (on a
    # slow host the first of the 90 others' may have left the window meanwhile).
    assert {member.encode() for member in ticket.members} <= {member for member, _ in log}
    assert len(moments) <= 91
    assert max(moments) / 1e6 > ticket.at  # admitted before reservations already granted
    assert over_limit_windows([m / 1e6 for m in moments], Window(limit=100, seconds=1.0)) == 0


async def test_ticket_may_not_send_once_its_tolerance_passed(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """The last check before sending fails once the loop stalled past the tolerance."""
    limiter, budget = make_limiter(tolerance=0.02), make_budget(5, 1.0)
    ticket = await limiter.admit(budget, Lane.HIGH)
    assert ticket.may_send()
    _block_the_loop(0.05)
    assert not ticket.may_send()


async def test_default_tolerance_is_part_of_the_margin(make_budget: MakeBudget) -> None:
    """Without an explicit tolerance, 60 % of the budget's margin may be spent late;
    a margin of 0 leaves lateness unchecked."""
    limiter = Limiter(aioredis.Redis())
    assert limiter.tolerance(make_budget(margin_ms=25)) == pytest.approx(0.015)
    assert limiter.tolerance(make_budget(margin_ms=0)) == float("inf")


async def test_ticket_may_not_send_once_its_budget_is_paused(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """A pause this process learnt of after admission stops the send at the last check."""
    limiter, budget = make_limiter(), make_budget(5, 1.0)
    ticket = await limiter.admit(budget, Lane.HIGH)
    assert ticket.may_send()
    limiter.watch.note(budget.name, 1.0)
    assert not ticket.may_send()


@pytest.mark.slow
@pytest.mark.parametrize("watch_live", [True, False], ids=["pubsub", "redis-read"])
async def test_cooldown_set_after_a_reservation_stops_its_send(
    make_limiter: MakeLimiter,
    make_budget: MakeBudget,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    watch_live: bool,
) -> None:
    """Worker A holds a reservation; worker B gets a 429 meanwhile. A does not send at its
    moment: it is admitted only after the cooldown, whether it learns of it by pub/sub
    or, with no live subscription, by reading Redis at wake time."""
    first, second = make_limiter(), make_limiter()
    budget = make_budget(1, 0.4)
    if not watch_live:
        monkeypatch.setattr(type(first.watch), "live", property(lambda _self: False))
    await first.acquire(budget, Lane.HIGH)
    waiter = asyncio.create_task(first.admit(budget, Lane.HIGH))
    await asyncio.sleep(0.15)  # A sleeps on its reservation, and is subscribed
    cooled = await second.pauses.cool_down(budget, asked=1.0, base=1.0, most=5.0, admitted_at=0.0)
    assert cooled.new
    ends = int(await redis_client.hget(budget.state_key, "cool_until")) / 1_000_000
    ticket = await waiter
    assert ticket.at >= ends


@pytest.mark.slow
async def test_escalation_counts_once_per_cooldown_across_workers(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """429s of requests sent before the cooldown ended are that cooldown's answer, from
    whichever worker; the next cooldown (a request sent after) doubles, up to the max."""
    workers = [make_limiter() for _ in range(3)]
    budget = make_budget(100, 1.0)
    sent = await _redis_now(redis_client)
    replies = [
        await worker.pauses.cool_down(budget, asked=None, base=0.2, most=0.5, admitted_at=sent)
        for worker in workers
    ]
    assert [(reply.new, reply.level) for reply in replies] == [(True, 0), (False, 0), (False, 0)]
    assert replies[0].left == pytest.approx(0.2, abs=0.01)
    levels, pauses = [], []
    for _ in range(3):
        await asyncio.sleep(0.25)  # the cooldown is over; a request sent now gets a 429
        after = await _redis_now(redis_client)
        reply = await workers[1].pauses.cool_down(
            budget, asked=None, base=0.2, most=0.5, admitted_at=after
        )
        levels.append(reply.level)
        pauses.append(reply.left)
        await asyncio.sleep(reply.left)
    assert levels == [1, 2, 2]  # 0.4 s, then the 0.5 s cap: the level stops growing
    assert pauses == pytest.approx([0.4, 0.5, 0.5], abs=0.01)


async def test_escalation_decays_after_a_window_served_without_a_429(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """The next 429 starts again from the base cooldown once the budget was served for
    a full window after the last cooldown: requests admitted since its end, and the
    refused one admitted a window or more after it. A budget slowed after a 429 never
    admits a full window's count, so time tells it, not a count."""
    limiter, budget = make_limiter(), make_budget(50, 0.3)
    sent = await _redis_now(redis_client)
    await limiter.pauses.cool_down(budget, asked=None, base=0.1, most=10, admitted_at=sent)
    await asyncio.sleep(0.15)
    sent = await _redis_now(redis_client)
    assert (
        await limiter.pauses.cool_down(budget, asked=None, base=0.1, most=10, admitted_at=sent)
    ).level == 1
    await asyncio.sleep(0.25)
    for _ in range(4):  # a few requests over more than a window: far below its count
        await limiter.wait(budget, Lane.HIGH)
        await asyncio.sleep(0.1)
    sent = await _redis_now(redis_client)
    reply = await limiter.pauses.cool_down(budget, asked=None, base=0.1, most=10, admitted_at=sent)
    assert (reply.level, reply.left) == (0, pytest.approx(0.1, abs=0.01))


async def test_a_429_after_an_idle_spell_still_escalates(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """Time alone proves nothing: with no request admitted since the cooldown ended, a
    429 (the market's penalty outlasting ours) escalates however long ago it ended."""
    limiter, budget = make_limiter(), make_budget(50, 0.2)
    sent = await _redis_now(redis_client)
    await limiter.pauses.cool_down(budget, asked=None, base=0.1, most=10, admitted_at=sent)
    await asyncio.sleep(0.4)
    sent = await _redis_now(redis_client)
    reply = await limiter.pauses.cool_down(budget, asked=None, base=0.1, most=10, admitted_at=sent)
    assert (reply.level, reply.left) == (1, pytest.approx(0.2, abs=0.01))


async def test_retry_after_is_kept_but_never_past_the_max(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """The market's Retry-After sets the cooldown; cooldown_max_seconds bounds it."""
    limiter, budget = make_limiter(), make_budget()
    reply = await limiter.pauses.cool_down(budget, asked=3600, base=1, most=2, admitted_at=0.0)
    assert reply.left == pytest.approx(2.0, abs=0.01)


async def test_each_new_cooldown_slows_the_budget_for_every_worker(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """A limit shared with other tools leaves less than configured: each new cooldown also
    halves the budget's rate for every worker (a 429 of a request in flight when it began
    does not); from the cooldown's end the rate doubles back every `slowdown_for` until
    the configured limit is whole again. An advertised limit above it does not undo it."""
    first, second = make_limiter(), make_limiter()
    budget = make_budget(16, 1.0)
    sent = await _redis_now(redis_client)
    slow = {"slowdown": 0.5, "slowdown_for": 0.4}
    await first.pauses.cool_down(budget, asked=None, base=0.1, most=1, admitted_at=sent, **slow)
    usage = await second.usage.read(budget)
    assert (usage.limit, usage.limit_source) == (8, "429")
    await second.pauses.cool_down(budget, asked=None, base=0.1, most=1, admitted_at=sent, **slow)
    assert (await second.usage.read(budget)).limit == 8  # in flight when it began: once only
    assert await second.pauses.advertise(budget, 12.0, "RateLimit", ttl=60)
    assert (await second.usage.read(budget)).limit == 8
    sent = await _redis_now(redis_client)
    await second.pauses.cool_down(
        budget, asked=0.05, base=0.1, most=1, admitted_at=sent + 1, **slow
    )
    assert (await first.usage.read(budget)).limit == 4
    await asyncio.sleep(0.05 + 0.5)  # the cooldown, then a little over one doubling time
    assert 8 <= (await first.usage.read(budget)).limit <= 10
    await asyncio.sleep(0.5)
    usage = await first.usage.read(budget)
    assert (usage.limit, usage.limit_source) == (12, "RateLimit")


async def test_quota_pause_refuses_every_lane_until_it_ends(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """A quota pause is a pause like a cooldown, but its own: no escalation, its length."""
    limiter, budget = make_limiter(), make_budget()
    assert await limiter.pauses.pause_for_quota(budget, 120) == pytest.approx(120, abs=0.01)
    for lane in Lane:
        refused = await limiter.acquire(budget, lane, max_wait=0)
        assert not refused.granted
        assert refused.wait > 119
    usage = await limiter.usage.read(budget)
    assert usage.quota_pause == pytest.approx(120, abs=0.5)
    assert usage.cooldown == 0


async def test_lower_advertised_limit_is_adopted_by_every_worker_then_expires(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """A market advertising 5/s against a configured 10/s: every worker admits 5 per
    second until the advertisement expires; then the configured limit is back."""
    first, second = make_limiter(), make_limiter()
    budget = make_budget(10, 1.0)
    assert await first.pauses.advertise(budget, 5.0, "X-Test", ttl=0.6)
    granted = [(await second.acquire(budget, Lane.HIGH, max_wait=0)).granted for _ in range(10)]
    assert granted.count(True) == 5
    usage = await second.usage.read(budget)
    assert (usage.limit, usage.limit_source) == (5, "X-Test")
    assert 0 < usage.advertised_for <= 0.6
    await asyncio.sleep(0.7)
    usage = await second.usage.read(budget)
    assert (usage.limit, usage.limit_source) == (10, "configured")


async def test_advertised_limit_above_the_configured_one_is_ignored(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """Never above configured: a higher advertisement changes nothing."""
    limiter, budget = make_limiter(), make_budget(10, 1.0)
    assert not await limiter.pauses.advertise(budget, 50.0, "X-Test", ttl=60)
    assert (await limiter.usage.read(budget)).limit_source == "configured"


@pytest.mark.slow
async def test_long_window_is_exact_by_rank_lookups(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """A budget of 20 per 0.2 s and 30 per 2 s: the long window, checked by rank lookups
    rather than by reading its entries, is never exceeded, nor the short one."""
    limiter = make_limiter()
    budget = make_budget(20, 0.2, extra=((30, 2.0),))
    admitted = []
    deadline = time.monotonic() + 2.2
    # The admitted moments from the tickets: the log itself prunes what left the window.
    while time.monotonic() < deadline:
        tickets = await asyncio.gather(*(limiter.admit(budget, Lane.HIGH) for _ in range(8)))
        admitted.extend(ticket.at for ticket in tickets)
    assert over_limit_windows(admitted, Window(limit=30, seconds=2.0)) == 0
    assert over_limit_windows(admitted, Window(limit=20, seconds=0.2)) == 0
    assert len(admitted) >= 30


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_empty_redis_restart_does_not_admit_a_second_window(
    make_budget: MakeBudget, own_redis: OwnRedis
) -> None:
    """A budget full up to its limit, then Redis restarts empty: the first window after the
    restart counts as full, so no trailing second ever holds more than the limit."""
    budget = make_budget(10, 1.0)
    moments: list[float] = []
    limiter = Limiter(own_redis.store.client)
    await asyncio.sleep(1.2)  # Redis has been up longer than the window
    for _ in range(10):  # (a budget's first use waits a window: its past is unknown)
        moments.append((await limiter.admit(budget, Lane.HIGH)).at)
    own_redis.server.stop()
    own_redis.server.start()
    while True:
        try:
            admission = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
            break
        except BudgetUnavailable:
            await asyncio.sleep(0.05)
    assert not admission.granted
    # The admitted moments from the tickets: the log itself prunes what left the window.
    for _ in range(10):
        moments.append((await limiter.admit(budget, Lane.HIGH)).at)
    await limiter.aclose()
    assert len(moments) == 20
    assert over_limit_windows(moments, Window(limit=10, seconds=1.0)) == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("subscribed", [True, False], ids=["subscription", "state-read"])
async def test_a_reservation_lost_in_a_redis_restart_is_not_used(
    make_budget: MakeBudget, monkeypatch: pytest.MonkeyPatch, subscribed: bool, own_redis: OwnRedis
) -> None:
    """A caller sleeps on a reservation; Redis restarts empty meanwhile. The new Redis
    knows nothing of that reservation and would admit others into its window, so the
    caller does not send at its moment: it learns of the restart (its subscription broke,
    or the state's `known` changed) and is admitted anew, after the new Redis's first
    window (rule 10)."""
    budget = make_budget(2, 3.0)
    limiter = Limiter(own_redis.store.client)
    if not subscribed:
        monkeypatch.setattr(limiter.watch, "enter", lambda: None)
        monkeypatch.setattr(limiter.watch, "leave", lambda: None)
    await asyncio.sleep(3.2)  # Redis has been up longer than the window
    for _ in range(2):
        assert (await limiter.acquire(budget, Lane.HIGH)).granted

    async def admitted() -> Ticket:
        while True:  # Redis down is waited out, as `MarketClient` does
            try:
                return await limiter.admit(budget, Lane.HIGH)
            except BudgetUnavailable:
                await asyncio.sleep(0.05)

    waiter = asyncio.create_task(admitted())
    await asyncio.sleep(0.2)  # it holds a reservation seconds ahead
    reserved = await own_redis.store.client.zrange(budget.log_key, 2, 2, withscores=True)
    assert reserved
    own_redis.server.stop()
    own_redis.server.start()
    restarted = time.time()  # Redis runs on this host's clock
    for _ in range(5):  # the pool's connections to the old Redis are replaced
        with contextlib.suppress(RedisError):
            await own_redis.store.client.ping()
    ticket = await asyncio.wait_for(waiter, 20)
    await limiter.aclose()
    assert ticket.at > reserved[0][1] / 1_000_000
    assert ticket.at >= restarted - 0.05 + 3.0


async def test_a_flushed_redis_counts_its_lost_past_as_full(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """FLUSHALL on a Redis up for longer than the window: no restart to see, but the
    slot's epoch is gone with the budget's log, so the past counts as a full window
    (rule 10) rather than as empty. So does a budget's first use on a Redis never
    marked (no epoch): its first window waits."""
    limiter, budget = make_limiter(restart_guard=True), make_budget(2, 0.5)
    first = await limiter.acquire(budget, Lane.HIGH)
    assert first.granted
    assert first.wait == pytest.approx(0.5, abs=0.05)
    await asyncio.sleep(0.6)
    assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted  # its past is known
    await redis_client.flushall()
    after = await limiter.acquire(budget, Lane.HIGH)
    assert after.granted
    assert after.wait == pytest.approx(0.5, abs=0.05)


_MINUTE = (Window(limit=100, seconds=60.0),)


async def _known_for(client: aioredis.Redis, budget: Budget, seconds: float) -> None:
    """Age the budget's slot epoch: this Redis run has kept its data for `seconds`
    (what `lanes provision` and that much time would leave)."""
    await mark_epochs(client)
    run, since = (await client.get(budget.epoch_key)).decode().split(":")
    await client.set(budget.epoch_key, f"{run}:{int(since) - round(seconds * 1_000_000)}")


async def _first_use(limiter: Limiter, name: str) -> Admission:
    """A budget never used before, with a 1-minute window: admitted now, or not."""
    return await limiter.acquire(Budget(name, _MINUTE), Lane.HIGH, max_wait=0)


async def test_a_new_budget_on_a_redis_known_for_a_window_is_admitted_at_once(
    make_limiter: MakeLimiter, redis_client: aioredis.Redis
) -> None:
    """A new budget (a new seller, a new endpoint) with a 1-minute window, on a Redis
    whose slot epoch shows it kept every write for more than a minute, has an empty
    past: its first request is admitted at once, not a minute later (rule 10)."""
    limiter = make_limiter(restart_guard=True)
    new = Budget("acme:orders:seller-1", _MINUTE)
    await _known_for(redis_client, new, 61.0)
    admission = await _first_use(limiter, new.name)
    assert admission.granted
    assert admission.wait == 0


async def test_a_new_budget_on_a_redis_marked_less_than_a_window_ago_waits_the_rest(
    make_limiter: MakeLimiter, redis_client: aioredis.Redis
) -> None:
    """Marked 20 s ago: writes before then are unknown, so a 1-minute window reaching
    back before the epoch counts as full until 60 s after it."""
    limiter = make_limiter(restart_guard=True)
    new = Budget("acme:orders:seller-2", _MINUTE)
    await _known_for(redis_client, new, 20.0)
    admission = await _first_use(limiter, new.name)
    assert not admission.granted
    assert admission.wait == pytest.approx(40.0, abs=1.0)


async def test_after_a_flushall_a_budget_waits_its_window(
    make_limiter: MakeLimiter, redis_client: aioredis.Redis
) -> None:
    """Admitted at once on a Redis known for long; after FLUSHALL (the connection
    kept, the server's run unchanged) the same budget, and a new one, wait a whole
    minute: the flush took the slot's epoch with it."""
    limiter = make_limiter(restart_guard=True)
    await _known_for(redis_client, Budget("acme:orders:seller-3", _MINUTE), 120.0)
    await _known_for(redis_client, Budget("acme:orders:seller-4", _MINUTE), 120.0)
    assert (await _first_use(limiter, "acme:orders:seller-3")).granted
    await redis_client.flushall()
    for name in ("acme:orders:seller-3", "acme:orders:seller-4"):
        admission = await _first_use(limiter, name)
        assert not admission.granted
        assert admission.wait == pytest.approx(60.0, abs=1.0)


@pytest.mark.slow
async def test_after_a_restart_a_budget_waits_its_window(own_redis: OwnRedis) -> None:
    """Redis restarts (here empty; with persistence the epoch would come back from
    another server run, which counts the same): the budget admitted at once before
    waits a whole minute after, as does a budget never used."""
    client = own_redis.store.client
    limiter = Limiter(client)
    await _known_for(client, Budget("acme:orders:seller-5", _MINUTE), 120.0)
    assert (await _first_use(limiter, "acme:orders:seller-5")).granted
    own_redis.server.stop()
    own_redis.server.start()
    for _ in range(5):  # the pool's connections to the old Redis are replaced
        with contextlib.suppress(RedisError):
            await client.ping()
    for name in ("acme:orders:seller-5", "acme:orders:seller-6"):
        admission = await _first_use(limiter, name)
        assert not admission.granted
        assert admission.wait == pytest.approx(60.0, abs=1.0)
    await limiter.aclose()


@pytest.mark.slow
async def test_after_a_failover_to_an_empty_replica_a_budget_waits_its_window(
    own_redis: OwnRedis,
) -> None:
    """Workers move to a replica that holds none of the primary's data (it lost it, or
    never synced) and has been up for long: no epoch there, so the budget admitted at
    once on the primary waits a whole minute on the replica."""
    limiter = Limiter(own_redis.store.client)
    await _known_for(own_redis.store.client, Budget("acme:orders:seller-7", _MINUTE), 120.0)
    assert (await _first_use(limiter, "acme:orders:seller-7")).granted
    await limiter.aclose()
    replica = RedisServer()
    replica.start()
    try:
        async with RedisStore(replica.url) as store, Limiter(store.client) as promoted:
            admission = await _first_use(promoted, "acme:orders:seller-7")
    finally:
        replica.stop()
    assert not admission.granted
    assert admission.wait == pytest.approx(60.0, abs=1.0)


async def test_provision_marks_every_slot_once(redis_client: aioredis.Redis) -> None:
    """`lanes provision` writes each of the 16384 slots' epochs; run again, it keeps them
    (an older epoch of the same server run proves more)."""
    assert await mark_epochs(redis_client) == len(epoch_keys()) == 16384
    assert await mark_epochs(redis_client) == 0
    assert {key_slot(key.encode()) for key in epoch_keys()} == set(range(16384))


async def test_admitted_moments_are_paced_not_one_burst(
    make_limiter: MakeLimiter, make_budget: MakeBudget
) -> None:
    """200 callers at once on a 500/s budget are not all admitted for one moment (which
    no host can send within the margin): at most PACE_BURST in any PACE_BURST / 500 s."""
    limiter, budget = make_limiter(), make_budget(500, 1.0)
    tickets = await asyncio.gather(*(limiter.admit(budget, Lane.HIGH) for _ in range(200)))
    moments = [ticket.at for ticket in tickets]
    assert over_limit_windows(moments, Window(limit=PACE_BURST, seconds=PACE_BURST / 500)) == 0
    assert over_limit_windows(moments, Window(limit=500, seconds=1.0)) == 0
    assert max(moments) - min(moments) >= (200 - PACE_BURST) / 500 - 0.001


async def test_an_uncertain_clock_is_sharpened_before_judging_lateness(
    make_limiter: MakeLimiter, make_budget: MakeBudget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every acquire round trip is slow (a cold connection, a loaded host), where
    Redis time lies is known only within that round trip: a caller would always look
    late and give its entry back. TIME round trips sharpen the clock first, so the
    caller is admitted and sends on time."""
    limiter, budget = make_limiter(tolerance=0.02), make_budget(5, 1.0)
    acquire = limiter._acquire

    async def slow_acquire(*args: object, **kwargs: object) -> object:
        await asyncio.sleep(0.06)  # three times the tolerance
        return await acquire(*args, **kwargs)

    monkeypatch.setattr(limiter, "_acquire", slow_acquire)
    ticket = await asyncio.wait_for(limiter.admit(budget, Lane.HIGH), 5)
    assert ticket.may_send()
    assert "given_back" not in limiter.lateness.counts
    low, high = limiter.clock.bounds()
    assert high - low <= 0.02 * 0.5


@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_live_subscription_learns_of_a_flushall(
    redis_server: RedisServer, protocol: int
) -> None:
    """A FLUSHALL keeps every connection, so no broken subscription shows it: client
    tracking on the pause subscription does, in RESP3 (redis-py's default) as in RESP2.
    A reservation granted before the flush is then not used (`lost_since`)."""
    async with RedisStore(f"{redis_server.url}?protocol={protocol}") as store:
        limiter = Limiter(store.client)
        limiter.watch.enter()
        assert await soon(lambda: limiter.watch.live)
        granted = time.monotonic()
        assert not limiter.watch.lost_since(granted)
        await store.client.flushall()
        assert await soon(lambda: limiter.watch.lost_since(granted))
        limiter.watch.leave()
        await limiter.aclose()


async def test_an_idle_budget_keeps_no_key_past_its_log(
    make_limiter: MakeLimiter, make_budget: MakeBudget, redis_client: aioredis.Redis
) -> None:
    """A state holding only `known` expires with the log (issue 20: 10,000 sellers' idle
    budgets leave no key but the slots' epochs); a pause's state keeps its day."""
    limiter, budget = make_limiter(), make_budget(5, 1.0)
    assert (await limiter.acquire(budget, Lane.HIGH)).granted
    log_ms = await redis_client.pttl(budget.log_key)
    state_ms = await redis_client.pttl(budget.state_key)
    assert 0 < state_ms <= log_ms <= 17_000  # 1 s + 5 s to spare + the memo's 10 s
    await limiter.pauses.penalize(budget, 1.0)
    assert await redis_client.pttl(budget.state_key) > 86_400_000 - 60_000
