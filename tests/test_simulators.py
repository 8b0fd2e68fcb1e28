"""The simulators enforce their markets' limit models and count what they serve."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest

from lanes import Lane
from markets import JobRequest
from markets.coupang.auth import authorization, sign, signed_date
from markets.coupang.simulator import coupang_app
from markets.naver.simulator import naver_app
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    MakeMarkets,
    StartSimulator,
    markets_config,
    naver_tokens,
)

PRODUCT_PATH = "/v2/providers/seller_api/apis/api/v1/marketplace/seller-products/1000001"


def _coupang_headers(path: str) -> dict[str, str]:
    date_text = signed_date(datetime.now(UTC))
    signature = sign("test-secret-key", date_text, "GET", path, "")
    return {"Authorization": authorization("test-access-key", date_text, signature)}


async def test_naver_bucket_refuses_past_its_burst_with_the_gateway_body(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Rate 2, burst 4: a sudden burst of 8 gets 429 GW.RATE_LIMIT with GNCP headers."""
    sim = await start_simulator(naver_app(rate=2))
    markets = await make_markets(markets_config(naver=sim.url))
    request = JobRequest("get_product", "naver", "s", {"origin_product_no": 5_000_001})
    await markets.run(request, Lane.HIGH)  # fetches the token; the bucket is now 3
    header = f"Bearer {await naver_tokens(markets).token(Lane.HIGH, None)}"
    url = f"{sim.url}/external/v2/products/origin-products/5000001"
    async with aiohttp.ClientSession(headers={"Authorization": header}) as session:

        async def get() -> tuple[int, dict[str, str], dict[str, object]]:
            async with session.get(url) as response:
                return response.status, dict(response.headers), await response.json()

        answers = await asyncio.gather(*(get() for _ in range(8)))
    refused = [answer for answer in answers if answer[0] == 429]
    assert 4 <= len(refused) <= 5
    _status, headers, body = refused[0]
    assert body["code"] == "GW.RATE_LIMIT"
    assert {"message", "timestamp", "traceId"} <= set(body)
    assert headers["GNCP-GW-RateLimit-Replenish-Rate"] == "2"
    assert headers["GNCP-GW-RateLimit-Burst-Capacity"] == "4"
    assert headers["GNCP-GW-RateLimit-Remaining"] == "0"
    assert sim.state.rate_limited["origin_product"] == len(refused)


async def test_naver_refuses_calls_without_a_valid_token(start_simulator: StartSimulator) -> None:
    """No bearer token, or an unknown one: 401 GW.AUTHN."""
    sim = await start_simulator(naver_app())
    url = f"{sim.url}/external/v2/products/origin-products/5000001"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer forged"}):
            async with session.get(url, headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["code"] == "GW.AUTHN"


@pytest.mark.slow
async def test_coupang_blocks_a_vendor_after_a_violation(start_simulator: StartSimulator) -> None:
    """Over 5 calls in a second: 429, and the vendor stays blocked for block_seconds."""
    sim = await start_simulator(coupang_app(rate=5, block_seconds=1.3))
    url = f"{sim.url}{PRODUCT_PATH}"
    async with aiohttp.ClientSession() as session:

        async def get() -> int:
            async with session.get(url, headers=_coupang_headers(PRODUCT_PATH)) as response:
                return response.status

        statuses = [await get() for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        started = time.monotonic()
        await asyncio.sleep(1.05)  # the window is over, but the block is not
        assert await get() == 429
        await asyncio.sleep(max(0.0, 1.4 - (time.monotonic() - started)))
        assert await get() == 200
    assert sim.state.served["product"] == 6
    assert sim.state.rate_limited["product"] == 2


async def test_coupang_warns_near_the_threshold(start_simulator: StartSimulator) -> None:
    """At 90 % of the vendor's limit answers carry X-CAG-Warnings."""
    sim = await start_simulator(coupang_app(rate=10))
    url = f"{sim.url}{PRODUCT_PATH}"
    async with aiohttp.ClientSession() as session:
        warned = []
        for _ in range(9):
            async with session.get(url, headers=_coupang_headers(PRODUCT_PATH)) as response:
                warned.append("X-CAG-Warnings" in response.headers)
    assert warned == [False] * 8 + [True]


async def test_latency_and_counters_are_visible(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Injected latency delays answers; /_sim/stats reports the counters."""
    sim = await start_simulator(coupang_app())
    sim.state.faults.latency = 0.3
    markets = await make_markets(markets_config(coupang=sim.url))
    started = time.monotonic()
    await markets.run(
        JobRequest("get_product", "coupang", COUPANG_VENDOR, {"seller_product_id": 1000001}),
        Lane.HIGH,
    )
    assert time.monotonic() - started >= 0.3
    async with aiohttp.ClientSession() as session, session.get(f"{sim.url}/_sim/stats") as reply:
        stats = await reply.json()
    assert stats["served"] == {"product": 1}
    assert stats["statuses"] == {"200": 1}
