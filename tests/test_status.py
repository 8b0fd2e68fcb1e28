"""`lanes status`: the queue depths and budget usage a test created, as JSON and as a table."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from lanes import Budget, Lane, Limiter, RedisStore, Window
from scripts.local.services import free_port
from tests.fixtures_scripts import CliRun, LanesEnv
from worker.pauses import LanePauses
from worker.sqs import OutgoingMessage, SqsClient
from worker.tracking import JobTracker


async def _load(env: LanesEnv) -> None:
    """3 messages in coupang/high (1 in flight), 2 dead letters in coupang/low; budget use."""
    async with SqsClient(endpoint_url=env.sqs_endpoint) as sqs:
        high = await sqs.queue_url(env.queue("coupang", "high"))
        await sqs.send_batch(high, [OutgoingMessage(body="{}") for _ in range(3)])
        await sqs.receive(high, max_messages=1, wait_seconds=0, visibility_timeout=60)
        dead = await sqs.queue_url(env.queue("coupang", "low", dead_letter=True))
        await sqs.send_batch(dead, [OutgoingMessage(body="{}") for _ in range(2)])
    async with RedisStore(env.redis_url) as store:
        await store.client.flushdb()
        limiter = Limiter(store.client, restart_guard=False)  # the tests' own, emptied Redis
        vendor = Budget.for_endpoint(
            "coupang", "vendor", (Window(limit=5, seconds=1),), scope="seller", seller="A1"
        )
        for lane in (Lane.HIGH, Lane.LOW, Lane.LOW):
            assert (await limiter.acquire(vendor, lane)).granted
        # A seller whose last request is older than the window: its log is gone.
        earlier = Budget.for_endpoint(
            "coupang", "vendor", (Window(limit=5, seconds=1),), scope="seller", seller="A2"
        )
        assert (await limiter.acquire(earlier, Lane.LOW)).granted
        await store.client.delete(earlier.log_key)
        changed = Budget.for_endpoint("naver", "changed_orders", (Window(limit=2, seconds=1),))
        assert (await limiter.acquire(changed, Lane.MEDIUM)).granted
        await limiter.pauses.penalize(changed, 30)
        dispatch = Budget.for_endpoint("naver", "dispatch", (Window(limit=2, seconds=1),))
        assert await limiter.pauses.advertise(dispatch, 1.0, "GNCP-GW-RateLimit", ttl=600)
        await limiter.pauses.pause_for_quota(dispatch, 3600)
        limiter.lateness.record(0.003, on_time=True)
        limiter.lateness.record(0.2, on_time=False)
        await limiter.lateness.flush(store.client)


@pytest.mark.slow
@pytest.mark.faults  # the budget's entries count for its 1 s window only: run alone
def test_status_shows_depths_and_budget_usage(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """Depths per lane, the seller budget found by scan, usage by lane and the cooldown."""
    assert run_cli("provision").code == 0
    asyncio.run(_load(lanes_env))
    result = run_cli("status", "--json")
    assert result.code == 0, result.err
    state = json.loads(result.out)
    queues = {(q["market"], q["lane"]): q for q in state["queues"]}
    assert queues["coupang", "high"]["visible"] == 2
    assert queues["coupang", "high"]["in_flight"] == 1
    assert queues["coupang", "low"]["dead_letter"] == 2
    assert queues["naver", "medium"]["visible"] == 0
    budgets = {row["budget"]: row for row in state["budgets"]}
    vendor = budgets["coupang:vendor:A1"]
    assert vendor["in_window"] == {"high": 1, "medium": 0, "low": 2}
    assert (vendor["used"], vendor["limit"]) == (3, 5)
    assert budgets["coupang:vendor:A2"]["used"] == 0  # listed a window after its use
    assert state["seller_budgets"] == {"coupang:vendor": 2}
    changed = budgets["naver:changed_orders"]
    assert changed["in_window"]["medium"] == 1
    assert 25 < changed["cooldown"] <= 30
    assert "naver:dispatch" in budgets  # app budgets are listed even when idle
    dispatch = budgets["naver:dispatch"]
    assert (dispatch["limit"], dispatch["configured"]) == (1, 2)
    assert dispatch["limit_source"] == "GNCP-GW-RateLimit"
    assert 3500 < dispatch["quota_pause"] <= 3600
    assert state["lateness"] == {"<=5ms": 1, "<=250ms": 1, "sent": 1, "given_back": 1}
    table = run_cli("status", "--market", "coupang").out
    assert "coupang:vendor:A1" in table
    assert "/5 per 1s" in table  # the 1 s window may have passed since the JSON run
    assert "naver" not in table
    assert "per-seller budgets used within a day: coupang:vendor 2" in table
    everything = run_cli("status").out
    assert "GNCP-GW-RateLimit (configured 2" in everything
    assert "given_back 1" in everything


def test_status_exits_non_zero_with_one_line_when_redis_cannot_be_read(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 25 (5): with no Redis answering, `lanes status` does not print tables that say
    "no budgets in use": one error line naming Redis, exit 1."""
    monkeypatch.setenv("LANES_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = run_cli("status")
    assert result.code == 1
    assert result.out == ""
    (line,) = result.err.splitlines()
    assert line.startswith("lanes: error: cannot read Redis for the budgets: ")


def test_status_shows_paused_lanes_with_who_and_when(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """A lane paused (`lanes pause`, the board) is shown paused, by whom and since when, in
    the table and the JSON; the others run. A paused lane holding a job shows how long
    its oldest has waited."""
    assert run_cli("provision").code == 0

    async def pause() -> None:
        async with RedisStore(lanes_env.redis_url) as store:
            await LanePauses(store.client).pause("naver", Lane.LOW, by="on call")
            await JobTracker(store.client, ttl=60).update(
                "stuck", "queued", market="naver", lane="low"
            )
        async with SqsClient(endpoint_url=lanes_env.sqs_endpoint) as sqs:
            url = await sqs.queue_url(lanes_env.queue("naver", "low"))
            await sqs.send_batch(url, [OutgoingMessage(body="{}")])

    asyncio.run(pause())
    state = json.loads(run_cli("status", "--json").out)
    assert state["paused"]["naver:low"]["by"] == "on call"
    queues = {(q["market"], q["lane"]): q for q in state["queues"]}
    assert queues["naver", "low"]["oldest_age"] is not None
    assert queues["naver", "high"]["oldest_age"] is None
    table = run_cli("status").out
    (paused,) = [line for line in table.splitlines() if "paused by" in line]
    assert paused.split()[:2] == ["naver", "low"]
    assert "paused by on call at 20" in paused
    assert table.count("running") == 5
