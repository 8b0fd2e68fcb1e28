"""A market's limits in its answers: 429 cooldowns, quota pauses, advertised limits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lanes import Lane, Limiter
from lanes.policy import LanePolicy
from markets.client import Call, MarketClient
from markets.config import EndpointConfig, MarketConfig, daily_reset
from markets.errors import QuotaExhausted, RateLimited
from markets.ratelimits import retry_after_seconds
from worker.outcomes import Action, outcome_of_error

Answer = tuple[int, dict[str, str], dict[str, str]]
MakeClient = Callable[..., Awaitable[MarketClient]]


@pytest.fixture
async def make_client(
    make_limiter: Callable[..., Limiter],
) -> AsyncIterator[MakeClient]:
    """Factory: a `MarketClient` on a local market that gives `answer` to every call."""
    servers: list[TestServer] = []
    session = aiohttp.ClientSession()

    async def make(answer: Answer, options: dict[str, str] | None = None) -> MarketClient:
        status, headers, body = answer

        async def call(_request: web.Request) -> web.Response:
            return web.json_response(body, status=status, headers=headers)

        app = web.Application()
        app.router.add_get("/call", call)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        config = MarketConfig(
            base_url=str(server.make_url("")).rstrip("/"),
            options=options or {},
            endpoints={"call": EndpointConfig(path="/call", rps=10)},
        )
        return MarketClient("acme", config, session, make_limiter())

    yield make
    await session.close()
    for server in servers:
        await server.close()


async def test_quota_answer_pauses_the_budget_and_releases_with_its_reset(
    make_client: MakeClient,
) -> None:
    """Naver's GW.QUOTA_LIMIT (a declared quota code) is not a rate limit: the budget is
    paused until the quota resets, and the worker releases the message with a
    visibility of that wait, spending no attempt."""
    client = await make_client(
        (429, {"Retry-After": "120"}, {"code": "GW.QUOTA_LIMIT", "message": "quota"}),
        {"quota_codes": "GW.QUOTA_LIMIT"},
    )
    with pytest.raises(QuotaExhausted) as caught:
        await client.send(Call("call"), Lane.HIGH, seller=None)
    assert caught.value.retry_after == pytest.approx(120, abs=1)
    assert caught.value.retry_at == pytest.approx(time.time() + 120, abs=2)
    usage = await client._limiter.usage.read(client.budget("call", None))
    assert usage.quota_pause == pytest.approx(120, abs=1)
    assert usage.cooldown == 0
    outcome = outcome_of_error(
        caught.value, lane=Lane.HIGH, policy=LanePolicy(ceiling=1.0), attempts=1
    )
    assert outcome.action is Action.RELEASE
    assert outcome.label == "quota"
    assert outcome.visibility == pytest.approx(120, abs=2)


async def test_quota_reset_from_the_catalogue_rule(make_client: MakeClient) -> None:
    """Without a Retry-After, the market's daily reset time decides the pause."""
    client = await make_client(
        (429, {}, {"code": "QUOTA"}), {"quota_codes": "QUOTA", "quota_reset": "00:00+09:00"}
    )
    with pytest.raises(QuotaExhausted) as caught:
        await client.send(Call("call"), Lane.LOW, seller=None)
    expected = daily_reset("00:00+09:00", datetime.now(UTC)).timestamp()
    assert caught.value.retry_at == pytest.approx(expected, abs=2)


async def test_429_cools_the_budget_and_retry_after_inf_does_not_crash(
    make_client: MakeClient,
) -> None:
    """A 429 with an unusable Retry-After (inf) falls back to the market's backoff."""
    client = await make_client(
        (429, {"Retry-After": "inf"}, {"code": "RATE"}),
        {"cooldown_seconds": "2", "cooldown_max_seconds": "8"},
    )
    with pytest.raises(RateLimited) as caught:
        await client.send(Call("call"), Lane.HIGH, seller=None)
    assert caught.value.retry_after == pytest.approx(2, abs=0.01)
    usage = await client._limiter.usage.read(client.budget("call", None))
    assert usage.cooldown == pytest.approx(2, abs=0.1)


async def test_advertised_lower_limit_from_answers_is_adopted(make_client: MakeClient) -> None:
    """`RateLimit-Policy: q=20;w=10` (2/s) under a configured 10/s is adopted by the budget."""
    client = await make_client((200, {"RateLimit-Policy": '"default";q=20;w=10'}, {"ok": "1"}))
    await client.send(Call("call"), Lane.HIGH, seller=None)
    usage = await client._limiter.usage.read(client.budget("call", None))
    assert (usage.limit, usage.limit_source) == (2, "RateLimit")


def test_retry_after_values() -> None:
    """Seconds, dates, and unusable values (inf, nan, words) as None."""
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("inf") is None
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds("soon") is None


def test_daily_reset_is_the_next_occurrence() -> None:
    """00:00+09:00 seen at 16:00 UTC is 15:00 UTC the next day."""
    now = datetime(2026, 1, 1, 16, 0, tzinfo=UTC)
    assert daily_reset("00:00+09:00", now) == datetime(2026, 1, 2, 15, 0, tzinfo=UTC)
