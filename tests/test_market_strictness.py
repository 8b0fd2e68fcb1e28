"""The simulators are as strict as the markets, and the new job kinds collect each item once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from lanes import Lane
from markets import AttemptsExhausted, JobRequest, PermanentError
from markets.errors import QuotaExhausted
from markets.naver_auth import client_secret_sign
from markets.simulators import coupang_app, naver_app
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    NAVER_APP,
    MakeMarkets,
    Running,
    StartSimulator,
    market_job,
    markets_config,
)
from tests.test_simulators import _coupang_headers

START = datetime(2025, 7, 1, tzinfo=UTC)
FAST: dict[str, Any] = {"coupang": {"groups": {"vendor": {"rps": 20}}}}


@pytest.fixture
async def coupang(start_simulator: StartSimulator) -> Running:
    return await start_simulator(coupang_app(rate=40, start=START))


def coupang_call(**payload: Any) -> JobRequest:
    return JobRequest("call", "coupang", COUPANG_VENDOR, payload)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("2025-07-01", "2025-07-02", r"createdAtFrom must be yyyy-mm-dd\+09:00"),
        ("2025-07-01+09:00", "2025-08-01+09:00", "at most 31 days"),
    ],
)
async def test_coupang_refuses_old_date_formats_and_windows_over_31_days(
    coupang: Running, make_markets: MakeMarkets, since: str, until: str, message: str
) -> None:
    """A bare date (the older form) or a 32-day window is a 400, as at Coupang."""
    markets = await make_markets(markets_config(coupang=coupang.url, extra=FAST))
    params = {"createdAtFrom": since, "createdAtTo": until, "status": "ACCEPT"}
    with pytest.raises(PermanentError, match=message):
        await markets.run(coupang_call(endpoint="orders", params=params), Lane.LOW)


async def test_coupang_blocks_grow_with_each_violation(start_simulator: StartSimulator) -> None:
    """A vendor that keeps calling over its limit is blocked longer each time."""
    sim = await start_simulator(coupang_app(rate=1, block_seconds=0.1))
    markets_path = "/v2/providers/seller_api/apis/api/v1/marketplace/seller-products/1000001"
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(
                f"{sim.url}{markets_path}", headers=_coupang_headers(markets_path)
            ) as response:
                await response.read()
            await asyncio.sleep(0.15)  # past the block, still within the one-second window
    assert sim.state.blocks == [0.1, 0.2]


@pytest.mark.slow
async def test_big_pages_need_the_endpoints_longer_timeout(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Big order pages are slow: the catalogue's per-endpoint timeout waits them out where
    the market-wide one gives up."""
    sim = await start_simulator(coupang_app(rate=40, start=START))
    sim.state.faults.big_page, sim.state.faults.big_page_delay = 20, 0.5
    request = JobRequest(
        "collect_orders", "coupang", COUPANG_VENDOR, {"since": "2025-07-01", "until": "2025-07-31"}
    )
    short = {
        "coupang": {**FAST["coupang"], "timeout": 0.2, "endpoints": {"orders": {"timeout": 0.2}}}
    }
    markets = await make_markets(markets_config(coupang=sim.url, extra=short))
    with pytest.raises(AttemptsExhausted, match="no answer within"):
        await markets.run(request, Lane.LOW, max_attempts=1)
    longer = {"coupang": {**FAST["coupang"], "timeout": 0.2}}  # the catalogue's 30 s for orders
    markets = await make_markets(markets_config(coupang=sim.url, extra=longer))
    result = await markets.run(request, Lane.LOW, max_attempts=1)
    assert result.data["count"] > 20


async def test_naver_refuses_a_seller_token_without_account_id(
    start_simulator: StartSimulator,
) -> None:
    """type=SELLER without account_id: 400, as at Naver."""
    sim = await start_simulator(naver_app())
    stamp = int(time.time() * 1000)
    form = {
        "client_id": NAVER_APP["client_id"],
        "timestamp": str(stamp),
        "client_secret_sign": client_secret_sign(
            NAVER_APP["client_id"], NAVER_APP["client_secret"], stamp
        ),
        "grant_type": "client_credentials",
        "type": "SELLER",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/external/v1/oauth2/token", data=form) as response,
    ):
        assert response.status == 400
        assert "account_id" in (await response.json())["message"]


async def test_naver_refuses_times_without_milliseconds(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    sim = await start_simulator(naver_app())
    markets = await make_markets(markets_config(naver=sim.url))
    params = {"lastChangedFrom": "2025-07-01T00:00:00+09:00"}
    request = JobRequest("call", "naver", "s", {"endpoint": "changed_orders", "params": params})
    with pytest.raises(PermanentError, match=r"yyyy-MM-ddTHH:mm:ss\.SSS"):
        await markets.run(request, Lane.LOW)


async def _quota_spent(
    start_simulator: StartSimulator, make_markets: MakeMarkets, period: str | None = None
) -> QuotaExhausted:
    """What a Naver call raises (one attempt) once the app's quota is spent; `period`: the
    one the answer names (the simulator's default otherwise)."""
    sim = await start_simulator(naver_app())
    markets = await make_markets(markets_config(naver=sim.url))
    sim.state.faults.quota_left = 0
    if period is not None:
        sim.state.faults.quota_period = period
    request = JobRequest("get_product", "naver", "s", {"origin_product_no": 5_000_001})
    with pytest.raises(QuotaExhausted) as raised:
        await markets.run(request, Lane.LOW, max_attempts=1)
    return raised.value


async def test_naver_answers_quota_limits(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """A spent quota answers 429 GW.QUOTA_LIMIT: the client raises QuotaExhausted (no retry)."""
    assert "GW.QUOTA_LIMIT" in str(await _quota_spent(start_simulator, make_markets))


async def test_coupang_inquiries_claims_and_repoll(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """Inquiries in 7-day queries, claims of both types, and unfinished orders read again:
    each item once."""
    markets = await make_markets(markets_config(coupang=coupang.url, extra=FAST))

    job = market_job("coupang", COUPANG_VENDOR)

    inquiries = await markets.run(
        job("collect_inquiries", since="2025-06-28", until="2025-07-08"), Lane.MEDIUM
    )
    assert inquiries.data["count"] == 40
    claims = await markets.run(
        job("collect_claims", since="2025-06-30", until="2025-08-01"), Lane.MEDIUM
    )
    assert claims.data["count"] == len(range(0, 120, 7))
    repolled = await markets.run(
        job("repoll_orders", shipment_box_ids=[600_000_001, 600_000_002]), Lane.LOW
    )
    assert repolled.data["unfinished"] == [600_000_001, 600_000_002]


async def test_naver_claims_and_repoll(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    sim = await start_simulator(naver_app(rate=50, orders=60, start=START, days=1))
    fast = {"naver": {"endpoints": {"changed_orders": {"rps": 50}, "order_details": {"rps": 50}}}}
    markets = await make_markets(markets_config(naver=sim.url, extra=fast))
    window = {"since": START.isoformat(), "until": "2025-07-02T12:00:00+00:00"}
    claims = await markets.run(JobRequest("collect_claims", "naver", "s", window), Lane.MEDIUM)
    assert claims.data["count"] == 6
    ids = ["20250000000000011", "20250000000000021"]
    repolled = await markets.run(
        JobRequest("repoll_orders", "naver", "s", {"product_order_ids": ids}), Lane.LOW
    )
    assert repolled.data["unfinished"] == ids


# -- what the published pages say (issue 18) -------------------------------------------------


async def test_coupang_return_requests_need_a_status_and_every_claim_comes_once(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """cancelType=RETURN without status or orderId is a 400, as at Coupang; collect_claims
    asks each return status (RU, UC, CC, PR) and CANCEL without one: every claim once."""
    markets = await make_markets(markets_config(coupang=coupang.url, extra=FAST))
    params = {"createdAtFrom": "2025-06-30", "createdAtTo": "2025-07-30", "cancelType": "RETURN"}
    with pytest.raises(PermanentError, match="status or orderId is required"):
        await markets.run(coupang_call(endpoint="claims", params=params), Lane.LOW)
    request = JobRequest(
        "collect_claims", "coupang", COUPANG_VENDOR, {"since": "2025-06-30", "until": "2025-08-01"}
    )
    claims = await markets.run(request, Lane.MEDIUM)
    kinds = sorted((claim["cancelType"], claim.get("status")) for claim in claims.data["claims"])
    assert claims.data["count"] == len(range(0, 120, 7))
    assert {status for kind, status in kinds if kind == "RETURN"} == {"RU", "UC", "CC", "PR"}


async def test_coupang_list_queries_ask_for_the_extended_timeout(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """Order and return list queries carry X-EXTENDED-TIMEOUT ("Timeout errors occur"):
    where the gateway times out without it (the simulator's slow lists), they succeed; the
    same list asked without it times out (504)."""
    markets = await make_markets(markets_config(coupang=coupang.url, extra=FAST))
    coupang.state.faults.slow_lists = True
    window = {"since": "2025-07-01", "until": "2025-07-05"}
    orders = await markets.run(
        JobRequest("collect_orders", "coupang", COUPANG_VENDOR, window), Lane.MEDIUM
    )
    assert orders.data["count"] > 0
    claims = await markets.run(
        JobRequest("collect_claims", "coupang", COUPANG_VENDOR, window), Lane.MEDIUM
    )
    assert claims.data["count"] > 0
    params = {"createdAtFrom": "2025-07-01+09:00", "createdAtTo": "2025-07-01+09:00"}
    bare = coupang_call(endpoint="orders", params={**params, "status": "ACCEPT"})
    with pytest.raises(AttemptsExhausted, match="504"):
        await markets.run(bare, Lane.LOW, max_attempts=1)


async def test_coupang_access_denied_after_a_burst_is_waited_out(
    coupang: Running, make_markets: MakeMarkets
) -> None:
    """The gateway's temporary 403 "Access Denied" page after a burst is cooled down like a
    429 and the call succeeds (it was a permanent error, a dead letter)."""
    fast = {"coupang": {**FAST["coupang"], "options": {"cooldown_seconds": "0.05"}}}
    markets = await make_markets(markets_config(coupang=coupang.url, extra=fast))
    coupang.state.faults.access_denied = 2
    request = JobRequest("get_product", "coupang", COUPANG_VENDOR, {"seller_product_id": 1000000})
    result = await markets.run(request, Lane.HIGH)
    assert result.data["product"]["sellerProductId"] == 1000000
    assert coupang.state.statuses[403] == 2


async def test_naver_quota_pause_lasts_the_period_its_answer_names(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """GW.QUOTA_LIMIT with `GNCP-GW-Quota-Period: SECONDS` pauses one second, not an hour."""
    error = await _quota_spent(start_simulator, make_markets, "SECONDS")
    assert error.retry_after == 1.0


async def test_a_naver_agency_app_is_a_base_url_setting(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """API agencies call `/partner/v1/...`: base_url ".../partner" is all it takes."""
    sim = await start_simulator(naver_app(prefix="/partner"))
    config = markets_config(
        extra={"naver": {"catalogue": "naver", "base_url": f"{sim.url}/partner"}}
    )
    markets = await make_markets(config)
    request = JobRequest("get_product", "naver", "s", {"origin_product_no": 5_000_001})
    result = await markets.run(request, Lane.LOW)
    assert result.data["product"]["originProduct"]["statusType"] == "SALE"
