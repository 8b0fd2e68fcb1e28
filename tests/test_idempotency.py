"""worker.idempotency: stated claims (claimed, posting, done) in the test Redis, and the
trace hook that marks "posting" just before a request of a claimed job leaves."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import redis.asyncio as aioredis

from lanes.errors import BudgetUnavailable
from tests.conftest import OwnRedis
from tests.fixtures_worker import AcmeMarket
from worker.idempotency import CheckFirst, ClaimBusy, ClaimLost, IdempotencyGuard

SHIP = ("acme", "s-1", "ship_order")


async def test_claim_then_done_then_duplicate(redis_client: aioredis.Redis) -> None:
    """The first delivery claims; while it runs a second is busy; after finish it sees done."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5)
    claim = await guard.begin(*SHIP, "ship-1")
    assert claim.done is None
    with pytest.raises(ClaimBusy) as busy:
        await guard.begin(*SHIP, "ship-1")
    assert 1.0 <= busy.value.retry_after <= 3.0
    await guard.finish(claim, {"data": {"ok": True}})
    again = await guard.begin(*SHIP, "ship-1")
    assert again.done == {"data": {"ok": True}}
    assert 0 < await redis_client.ttl(IdempotencyGuard.key(*SHIP, "ship-1")) <= 60


def test_the_key_covers_market_seller_kind_and_id() -> None:
    """Issue 12 (3): the same id for another seller, kind or market is another job; free text
    (braces) never escapes the market's hash tag."""
    keys = {
        IdempotencyGuard.key("acme", "s-1", "ship_order", "1"),
        IdempotencyGuard.key("acme", "s-2", "ship_order", "1"),
        IdempotencyGuard.key("acme", "s-1", "answer_inquiry", "1"),
        IdempotencyGuard.key("naver", "s-1", "ship_order", "1"),
    }
    assert len(keys) == 4
    assert IdempotencyGuard.key("acme", "{x}", "k", "{y}").count("{") == 1


async def test_abandon_frees_only_our_claim(redis_client: aioredis.Redis) -> None:
    """Abandoning frees the claim for the next delivery; a done record is never abandoned."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5)
    claim = await guard.begin(*SHIP, "a")
    await guard.abandon(claim)
    retaken = await guard.begin(*SHIP, "a")
    await guard.finish(retaken, {"x": 1})
    await guard.abandon(claim)
    assert (await guard.begin(*SHIP, "a")).done == {"x": 1}


@pytest.mark.slow
async def test_held_claim_outlives_its_lease(redis_client: aioredis.Redis) -> None:
    """While `held`, the lease is refreshed: a job longer than the lease stays exclusive."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=1)
    claim = await guard.begin(*SHIP, "long")
    async with guard.held(claim):
        await asyncio.sleep(1.5)
        with pytest.raises(ClaimBusy):
            await guard.begin(*SHIP, "long")


async def test_a_holder_that_died_before_posting_is_simply_replaced(
    redis_client: aioredis.Redis,
) -> None:
    """A claim whose holder died while still waiting (nothing sent) is taken over once its
    lease lapses: no person is needed."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=1)
    await guard.begin(*SHIP, "waited")
    await redis_client.delete(IdempotencyGuard.key(*SHIP, "waited") + ":lease")
    assert (await guard.begin(*SHIP, "waited")).done is None


async def test_posting_marked_by_the_hook_makes_the_next_holder_resume(
    redis_client: aioredis.Redis, acme: AcmeMarket
) -> None:
    """Issue 12 (3): the hook marks the claim "posting" before the POST leaves; if the holder
    then dies (SIGKILL: its lease lapses), the next delivery takes the claim over *resumed*
    (still "posting", now under its own token and lease: the job checks before posting)."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=1)
    claim = await guard.begin(*SHIP, "killed")
    session = aiohttp.ClientSession(trace_configs=[guard.trace_config()])
    async with session, guard.held(claim), session.post(f"{acme.url}/ship", json={}) as answer:
        assert answer.status == 200
    assert claim.landed
    raw = await redis_client.get(IdempotencyGuard.key(*SHIP, "killed"))
    assert raw is not None
    assert raw.startswith(b"posting:")
    await redis_client.delete(IdempotencyGuard.key(*SHIP, "killed") + ":lease")
    resumed = await guard.begin(*SHIP, "killed")
    assert (resumed.resumed, resumed.posting, resumed.uncertain) == (True, True, True)
    assert await redis_client.get(resumed.key) == f"posting:{resumed.token}".encode()
    assert await redis_client.get(resumed.lease) == resumed.token.encode()
    with pytest.raises(ClaimBusy):
        await guard.begin(*SHIP, "killed")


async def test_a_request_without_answer_is_never_sent_again(
    redis_client: aioredis.Redis, acme: AcmeMarket
) -> None:
    """Issue 12 (3): after a client timeout on a POST, a retry in the same run is refused by
    the hook (CheckFirst: the job is run again resumed): the market sees one POST."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5)
    claim = await guard.begin(*SHIP, "timeout")
    timeout = aiohttp.ClientTimeout(total=0.2)
    session = aiohttp.ClientSession(trace_configs=[guard.trace_config()])
    async with session, guard.held(claim):
        with pytest.raises(TimeoutError):
            async with session.post(f"{acme.url}/ship?sleep=1", timeout=timeout):
                pass
        with pytest.raises(CheckFirst):
            async with session.post(f"{acme.url}/ship", timeout=timeout):
                pass
    assert claim.uncertain
    assert len(acme.calls("/ship")) == 1


async def test_after_a_request_without_answer_the_resumed_run_waits_for_it_to_settle(
    redis_client: aioredis.Redis, acme: AcmeMarket
) -> None:
    """A timed-out POST may still be acted on by the market (its answer just came late): a
    resumed run checking at once could miss it and post twice. Giving up keeps the lease
    for `settle_seconds`: the next delivery is busy (a wait) until then, and resumed after.
    A run that gave up with every request answered is taken over at once."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5, settle_seconds=0.5)
    claim = await guard.begin(*SHIP, "late-answer")
    timeout = aiohttp.ClientTimeout(total=0.1)
    session = aiohttp.ClientSession(trace_configs=[guard.trace_config()])
    async with session, guard.held(claim):
        with pytest.raises(TimeoutError):
            async with session.post(f"{acme.url}/ship?sleep=0.3", timeout=timeout):
                pass
    await guard.give_up(claim)
    with pytest.raises(ClaimBusy):
        await guard.begin(*SHIP, "late-answer")
    await asyncio.sleep(0.6)
    assert (await guard.begin(*SHIP, "late-answer")).resumed

    answered = await guard.begin(*SHIP, "answered")
    answered.posting = answered.landed = True
    await redis_client.set(answered.key, f"posting:{answered.token}")
    await guard.give_up(answered)
    assert (await guard.begin(*SHIP, "answered")).resumed


async def test_a_claim_lost_before_posting_stops_the_request(
    redis_client: aioredis.Redis, acme: AcmeMarket
) -> None:
    """Issue 12 (3): Redis lost the claim (a restart) before anything was sent: the request
    does not leave (ClaimLost, a wait), so no side effect happens without its record."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5)
    claim = await guard.begin(*SHIP, "lost")
    await redis_client.delete(claim.key, claim.lease)
    session = aiohttp.ClientSession(trace_configs=[guard.trace_config()])
    async with session, guard.held(claim):
        with pytest.raises(ClaimLost):
            async with session.post(f"{acme.url}/ship"):
                pass
    assert acme.calls() == []
    assert not claim.uncertain


async def test_a_claim_in_a_redis_just_started_waits_for_live_holders(
    own_redis: OwnRedis,
) -> None:
    """Issue 25 (2): in a Redis younger than the quarantine, a missing record may be one the
    restart lost while its holder is still posting: the claim waits (ClaimBusy, no attempt)
    for the holders to put theirs back. A done record is answered at once; without the
    guard (a Redis nobody else used) the claim is taken."""
    client = own_redis.store.client
    guard = IdempotencyGuard(client, ttl=60, claim_seconds=10, restart_guard=True)
    assert guard.quarantine_seconds == 3 * 2.0 + 1.0
    with pytest.raises(ClaimBusy) as busy:
        await guard.begin(*SHIP, "young")
    assert busy.value.retry_after >= 1.0
    assert await client.exists(IdempotencyGuard.key(*SHIP, "young")) == 0
    await client.set(IdempotencyGuard.key(*SHIP, "known"), 'done:{"x": 1}')
    assert (await guard.begin(*SHIP, "known")).done == {"x": 1}
    guard.restart_guard = False
    assert (await guard.begin(*SHIP, "young")).done is None


async def test_a_holder_puts_back_the_record_a_restart_lost(
    redis_client: aioredis.Redis,
) -> None:
    """Issue 25 (2): the holder's refresh finds its record gone (Redis restarted empty) and
    puts it back, "posting" with its lease, so a duplicate delivery finds it held; a record
    another holder took is not overwritten: the claim is lost for good."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5)
    claim = await guard.begin(*SHIP, "restored")
    claim.posting = True
    await redis_client.delete(claim.key, claim.lease)
    await guard.refresh(claim)
    assert await redis_client.get(claim.key) == f"posting:{claim.token}".encode()
    assert await redis_client.get(claim.lease) == claim.token.encode()
    assert 0 < await redis_client.ttl(claim.key) <= 60
    with pytest.raises(ClaimBusy):
        await guard.begin(*SHIP, "restored")
    assert not claim.lost

    await redis_client.set(claim.key, "claimed:someone-else")
    await guard.refresh(claim)
    assert claim.lost
    assert await redis_client.get(claim.key) == b"claimed:someone-else"


async def test_a_claim_lost_after_posting_stops_the_next_post_and_is_resumed(
    redis_client: aioredis.Redis, acme: AcmeMarket
) -> None:
    """Issue 25 (2): every changing request checks the claim first, not only the first one:
    after Redis lost the record mid-job, the next POST does not leave (ClaimLost); giving up
    puts the record back "posting", so the next delivery is resumed (checks the market
    before it posts), never a fresh claim that posts blindly."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5)
    claim = await guard.begin(*SHIP, "two-posts")
    session = aiohttp.ClientSession(trace_configs=[guard.trace_config()])
    async with session, guard.held(claim):
        async with session.post(f"{acme.url}/ship", json={}) as answer:
            assert answer.status == 200
        await redis_client.delete(claim.key, claim.lease)  # Redis restarted empty
        with pytest.raises(ClaimLost):
            async with session.post(f"{acme.url}/ship", json={}):
                pass
    assert len(acme.calls("/ship")) == 1
    assert claim.uncertain
    await guard.give_up(claim)
    assert (await guard.begin(*SHIP, "two-posts")).resumed


async def test_redis_down_is_budget_unavailable() -> None:
    """An unreachable Redis fails closed as BudgetUnavailable (the message waits)."""
    client = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    guard = IdempotencyGuard(client, ttl=60, claim_seconds=5)
    try:
        with pytest.raises(BudgetUnavailable):
            await guard.begin(*SHIP, "x")
    finally:
        await client.aclose()
