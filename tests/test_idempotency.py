"""worker.idempotency: claims and done records in the test Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from lanes.errors import BudgetUnavailable
from worker.idempotency import ClaimBusy, IdempotencyGuard


async def test_claim_then_done_then_duplicate(redis_client: aioredis.Redis) -> None:
    """The first delivery claims; while it runs a second is busy; after finish it sees done."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5)
    claim = await guard.begin("acme", "ship-1")
    assert claim.token is not None
    assert claim.done is None
    with pytest.raises(ClaimBusy) as busy:
        await guard.begin("acme", "ship-1")
    assert 1.0 <= busy.value.retry_after <= 3.0
    await guard.finish(claim, {"data": {"ok": True}})
    again = await guard.begin("acme", "ship-1")
    assert again.done == {"data": {"ok": True}}
    assert 0 < await redis_client.ttl(IdempotencyGuard.key("acme", "ship-1")) <= 60


async def test_abandon_frees_only_our_claim(redis_client: aioredis.Redis) -> None:
    """Abandoning frees the claim for the next delivery; a done record is never abandoned."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=5)
    claim = await guard.begin("acme", "a")
    await guard.abandon(claim)
    retaken = await guard.begin("acme", "a")
    await guard.finish(retaken, {"x": 1})
    await guard.abandon(claim)
    assert (await guard.begin("acme", "a")).done == {"x": 1}


async def test_held_claim_outlives_its_ttl(redis_client: aioredis.Redis) -> None:
    """While `held`, the claim is refreshed: a job longer than the claim TTL stays exclusive."""
    guard = IdempotencyGuard(redis_client, ttl=60, claim_seconds=1)
    claim = await guard.begin("acme", "long")
    async with guard.held(claim):
        await asyncio.sleep(1.5)
        with pytest.raises(ClaimBusy):
            await guard.begin("acme", "long")


async def test_redis_down_is_budget_unavailable() -> None:
    """An unreachable Redis fails closed as BudgetUnavailable (the message comes back later)."""
    client = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    guard = IdempotencyGuard(client, ttl=60, claim_seconds=5)
    try:
        with pytest.raises(BudgetUnavailable):
            await guard.begin("acme", "x")
    finally:
        await client.aclose()
