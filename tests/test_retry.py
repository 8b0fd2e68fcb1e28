"""The lanes' retry policy: retry transient failures by lane, never permanent ones."""

from __future__ import annotations

import asyncio
import time

import pytest

from lanes import Lane, LanePolicies
from markets import AttemptsExhausted, JobRequest, PermanentError, RetryLater
from scripts.local.services import RedisServer
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    MakeMarkets,
    Running,
    Scripted,
    acme_config,
    markets_config,
)

PRODUCT = JobRequest("get_product", "coupang", COUPANG_VENDOR, {"seller_product_id": 1000000})
MISSING = JobRequest("get_product", "coupang", COUPANG_VENDOR, {"seller_product_id": 42})


@pytest.mark.slow
@pytest.mark.parametrize("lane", [Lane.HIGH, Lane.MEDIUM])
async def test_high_and_medium_retry_through_a_burst_of_5xx(
    coupang_sim: Running, make_markets: MakeMarkets, lane: Lane
) -> None:
    """Six 503s in a row, then success: the job succeeds on the seventh attempt."""
    markets = await make_markets(markets_config(coupang=coupang_sim.url))
    coupang_sim.state.faults.fail_next = 6
    result = await markets.run(PRODUCT, lane)
    assert result.data["product"]["sellerProductId"] == 1000000
    assert result.calls == 7
    assert coupang_sim.state.injected["product"] == 6
    assert coupang_sim.state.served["product"] == 1


async def test_low_gives_up_after_its_max_attempts(
    coupang_sim: Running, make_markets: MakeMarkets
) -> None:
    """Low stops after max_attempts (3 by default) with AttemptsExhausted and the last error."""
    markets = await make_markets(markets_config(coupang=coupang_sim.url))
    coupang_sim.state.faults.error_rate = 1.0
    with pytest.raises(AttemptsExhausted) as raised:
        await markets.run(PRODUCT, Lane.LOW)
    assert raised.value.attempts == 3
    assert "503" in raised.value.last_error
    assert coupang_sim.state.arrived["product"] == 3


@pytest.mark.slow
async def test_max_attempts_comes_from_the_lane_policy(
    coupang_sim: Running, make_markets: MakeMarkets
) -> None:
    """`[lanes.low] max_attempts = 5` in the TOML makes low try five times."""
    config = markets_config(coupang=coupang_sim.url).model_copy(
        update={"lanes": LanePolicies.model_validate({"low": {"max_attempts": 5}})}
    )
    markets = await make_markets(config)
    coupang_sim.state.faults.error_rate = 1.0
    with pytest.raises(AttemptsExhausted):
        await markets.run(PRODUCT, Lane.LOW)
    assert coupang_sim.state.arrived["product"] == 5


@pytest.mark.parametrize("lane", list(Lane))
async def test_a_permanent_400_is_never_retried(
    coupang_sim: Running, make_markets: MakeMarkets, lane: Lane
) -> None:
    """A 400 from the market raises PermanentError after one request, in every lane."""
    markets = await make_markets(markets_config(coupang=coupang_sim.url))
    with pytest.raises(PermanentError) as raised:
        await markets.run(MISSING, lane)
    assert (raised.value.status, raised.value.code) == (400, "ERROR")
    assert coupang_sim.state.arrived["product"] == 1


async def test_the_deadline_turns_retrying_into_retry_later(
    coupang_sim: Running, make_markets: MakeMarkets
) -> None:
    """High keeps retrying a failing market only until the caller's deadline: RetryLater."""
    markets = await make_markets(markets_config(coupang=coupang_sim.url))
    coupang_sim.state.faults.error_rate = 1.0
    with pytest.raises(RetryLater) as raised:
        await markets.run(PRODUCT, Lane.HIGH, deadline=time.monotonic() + 0.7)
    assert "503" in raised.value.reason
    assert coupang_sim.state.arrived["product"] >= 2


@pytest.mark.slow
async def test_budget_waits_are_not_attempts(scripted: Scripted, make_markets: MakeMarkets) -> None:
    """Fourteen low jobs with one attempt each on a 10 rps budget: all wait, all succeed."""
    markets = await make_markets(acme_config(scripted, rps=10))
    request = JobRequest("call", "acme", "s-1", {"endpoint": "answer"})
    results = await asyncio.gather(
        *(markets.run(request, Lane.LOW, max_attempts=1) for _ in range(14))
    )
    assert all(result.calls == 1 for result in results)
    assert len(scripted.seen) == 14


@pytest.mark.slow
async def test_a_redis_outage_is_waited_out_without_sending(
    scripted: Scripted, make_markets: MakeMarkets, redis_server: RedisServer
) -> None:
    """Redis down: no request goes out and no attempt is spent; when it is back the job runs."""
    markets = await make_markets(acme_config(scripted))
    request = JobRequest("call", "acme", "s-1", {"endpoint": "answer"})
    redis_server.stop()
    try:
        with pytest.raises(RetryLater, match="redis unavailable"):
            await markets.run(request, Lane.LOW, deadline=time.monotonic() + 0.5)
        assert scripted.seen == []
        running = asyncio.ensure_future(markets.run(request, Lane.LOW, max_attempts=1))
        await asyncio.sleep(0.4)
        assert not running.done()
    finally:
        redis_server.start()
    result = await asyncio.wait_for(running, 20)
    assert result.calls == 1
    assert len(scripted.seen) == 1
