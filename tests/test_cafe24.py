"""Cafe24 as a market: the registry knows it, its jobs against the strict simulator (orders
in windows of the longest span, each once; one order; shipments per order item; a product;
stock), and the simulator refuses what Cafe24 refuses."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from lanes import Lane
from markets import JobRequest, Markets, PermanentError
from markets.cafe24 import jobs as cafe24_jobs
from markets.cafe24 import simulator as cafe24_simulator
from markets.cafe24.jobs import ORDERS, cafe24_time
from markets.cafe24.simulator import DEFAULT_MALLS, cafe24_app, cafe24_malls
from markets.client import Call, MarketClient
from markets.errors import RetryLater
from markets.registry import AUTH_SCHEMES, MARKETS, built_in
from scripts.tools.backfill import window_jobs
from tests.fixtures_markets import MakeMarkets, Running, StartSimulator
from tests.test_cafe24_auth import (
    MALLS,
    NO_SETTINGS,
    cafe24_config,
    credentials_file,
    served,
)

MALL = MALLS[0]


async def _markets(
    sim: Running, make_markets: MakeMarkets, tmp_path: Path, **table: Any
) -> Markets:
    path = credentials_file(tmp_path)
    return await make_markets(cafe24_config(sim.url, f"file:{path}", **table), settings=NO_SETTINGS)


def _run(kind: str, payload: dict[str, Any], mall: str = MALL) -> JobRequest:
    return JobRequest(kind, "cafe24", mall, payload)


def test_the_registry_brings_cafe24_in_with_its_one_line() -> None:
    """`catalogue = "cafe24"` resolves; its auth scheme and every budget is per mall."""
    assert MARKETS["cafe24"] is built_in("cafe24")
    assert "cafe24_oauth" in AUTH_SCHEMES
    config = cafe24_config("https://example.invalid", "file:/x.json")
    market = config.markets["cafe24"]
    assert market.base_url == "https://example.invalid/{seller}/api/v2"
    assert {endpoint.scope for endpoint in market.endpoints.values()} == {"seller"}


def test_the_base_url_carries_the_mall() -> None:
    """`{seller}` in the base URL is the mall, quoted; a call without a seller is refused."""
    config = cafe24_config("https://example.invalid", "file:/x.json").markets["cafe24"]
    client = MarketClient("cafe24", config, session=None, limiter=None)  # type: ignore[arg-type]
    url = client.url(Call("order", path={"order_id": "20260101-0000001"}), "my mall")
    assert str(url) == "https://example.invalid/my%20mall/api/v2/admin/orders/20260101-0000001"
    with pytest.raises(PermanentError, match="needs the message's seller"):
        client.url(Call("orders"), None)


async def test_a_60_day_backfill_returns_every_order_once(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """`lanes backfill` over 60 days cuts windows of the longest span Cafe24 accepts (30 days);
    together they return each of the mall's orders exactly once."""
    now = datetime.now(UTC).replace(microsecond=0)
    sim, app = await served(start_simulator, orders=150, start=now - timedelta(days=60), days=60)
    markets = await _markets(sim, make_markets, tmp_path)
    config = markets.config.markets["cafe24"]
    jobs = [
        json.loads(body)
        for _where, body in window_jobs("cafe24", config, MALL, now - timedelta(days=61), now, None)
    ]
    assert len(jobs) == 3  # 61 days in windows of at most 30
    seen: list[str] = []
    for job in jobs:
        result = await markets.run(_run("collect_orders", job["payload"]), Lane.LOW)
        seen.extend(order["order_id"] for order in result.data["orders"])
    expected = [order["order_id"] for order in cafe24_malls(app).malls[MALL].orders]
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen)) == 150
    assert sim.state.rate_limited["orders"] == 0


async def test_a_window_past_the_largest_offset_is_halved_until_it_fits(
    start_simulator: StartSimulator,
    make_markets: MakeMarkets,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the largest offset at 20 and pages of 10, a window of 150 orders cannot be paged
    through: it is halved (its size read first) until each part fits, and every order comes
    once, without one refused query."""
    monkeypatch.setattr(cafe24_jobs, "MAX_OFFSET", 20)
    monkeypatch.setattr(cafe24_simulator, "MAX_OFFSET", 20)
    now = datetime.now(UTC).replace(microsecond=0)
    sim, app = await served(start_simulator, orders=150, start=now - timedelta(days=10), days=10)
    fast = {"rps": 20, "scope": "seller"}
    markets = await _markets(
        sim, make_markets, tmp_path, endpoints={"orders": fast, "orders_count": fast}
    )
    payload = {
        "since": (now - timedelta(days=11)).isoformat(),
        "until": now.isoformat(),
        "limit": 10,
    }
    result = await markets.run(_run("collect_orders", payload), Lane.LOW)
    ids = [order["order_id"] for order in result.data["orders"]]
    assert sorted(ids) == sorted(o["order_id"] for o in cafe24_malls(app).malls[MALL].orders)
    assert sim.state.served["orders_count"] > 1
    assert sim.state.statuses[422] == 0
    assert sim.state.rate_limited == {}


async def test_collect_orders_pages_and_moves_the_watermark(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """An incremental run reads the mall's first lookback in pages of `limit`, each order
    once with its items, and says where the watermark moves once delivered."""
    now = datetime.now(UTC)
    sim, _app = await served(start_simulator, orders=40, start=now - timedelta(hours=20), days=1)
    markets = await _markets(sim, make_markets, tmp_path)
    result = await markets.run(_run("collect_orders", {"limit": 7}), Lane.MEDIUM)
    ids = [order["order_id"] for order in result.data["orders"]]
    assert len(ids) == len(set(ids)) == result.data["count"]
    assert all(order["items"] for order in result.data["orders"])
    assert sim.state.served["orders"] >= result.data["count"] // 7
    assert result.watermark is not None
    assert result.watermark.what == "orders"
    assert now - ORDERS.settle - timedelta(seconds=5) <= result.watermark.until <= now


async def test_orders_of_another_mall_stay_apart(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """One order read for each of two malls: each from its own data."""
    sim, app = await served(start_simulator)
    markets = await _markets(sim, make_markets, tmp_path)
    for mall in MALLS[:2]:
        first = cafe24_malls(app).malls[mall].orders[0]
        result = await markets.run(
            _run("collect_order", {"order_id": first["order_id"]}, mall), Lane.LOW
        )
        assert result.data["order"]["mall_id"] == mall
        assert result.data["order"]["items"] == first["items"]


async def test_ship_order_registers_each_shipment_once(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """Two shipments of one order's items; the same job again (resumed: it may have landed)
    finds them registered and posts nothing."""
    sim, app = await served(start_simulator, seed=3)
    order = next(o for o in cafe24_malls(app).malls[MALL].orders if len(o["items"]) >= 2)
    codes = [item["order_item_code"] for item in order["items"]]
    payload = {
        "order_id": order["order_id"],
        "shipments": [
            {"order_item_codes": codes[:1], "tracking_no": "111", "shipping_company_code": "0019"},
            {"order_item_codes": codes[1:], "tracking_no": "222", "shipping_company_code": "0019"},
        ],
    }
    markets = await _markets(sim, make_markets, tmp_path)
    result = await markets.run(_run("ship_order", payload), Lane.HIGH)
    assert [each["shipment"]["tracking_no"] for each in result.data["shipments"]] == ["111", "222"]
    again = await markets.run(_run("ship_order", payload), Lane.HIGH, resumed=True)
    assert all(each["already_done"] for each in again.data["shipments"])
    assert sim.state.items_posted == {code: 1 for code in codes}


async def test_answer_inquiry_comments_on_the_board_post_once(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """answer_inquiry answers a Q&A board post with a comment; the same job again (resumed:
    it may have landed) finds the answer among the post's comments and posts nothing; a
    post the mall does not have is a permanent error."""
    sim, app = await served(start_simulator)
    markets = await _markets(sim, make_markets, tmp_path)
    payload = {"board_no": 1, "article_no": 3, "content": "내일 출고됩니다.", "writer": "shop"}
    result = await markets.run(_run("answer_inquiry", payload), Lane.HIGH)
    assert result.data["answer"]["comment"]["content"] == "내일 출고됩니다."
    again = await markets.run(_run("answer_inquiry", payload), Lane.HIGH, resumed=True)
    assert again.data["answer"]["already_done"]
    assert sim.state.effects["comment:1:3"] == 1
    assert len(cafe24_malls(app).malls[MALL].comments[(1, 3)]) == 1
    with pytest.raises(PermanentError, match="article not found"):
        await markets.run(_run("answer_inquiry", {**payload, "article_no": 99}), Lane.HIGH)


async def test_read_a_product_and_set_a_variants_stock(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """get_product reads the product and its variants; update_product sets one variant's
    stock, which the next read shows."""
    sim, _app = await served(start_simulator)
    markets = await _markets(sim, make_markets, tmp_path)
    update = {"product_no": 4, "variant_code": "P0000004000B", "stock": 3}
    result = await markets.run(_run("update_product", update), Lane.LOW)
    assert result.data["stock"] == 3
    read = await markets.run(_run("get_product", {"product_no": 4}), Lane.LOW)
    stocks = {each["variant_code"]: each["quantity"] for each in read.data["variants"]}
    assert stocks == {"P0000004000A": 10, "P0000004000B": 3}


@pytest.mark.parametrize(
    ("start", "end", "wrong"),
    [
        ("2026-01-01 00:00:00", "2026-01-02T00:00:00+09:00", "start_date must be"),
        ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00+09:00", "start_date must be"),
        ("2026-01-01T00:00:00+09:00", "2026-03-01T00:00:00+09:00", "at most 30 days"),
        ("2026-01-02T00:00:00+09:00", "2026-01-01T00:00:00+09:00", "before start_date"),
    ],
)
async def test_the_simulator_refuses_wrong_dates_and_spans(
    start_simulator: StartSimulator,
    make_markets: MakeMarkets,
    tmp_path: Path,
    start: str,
    end: str,
    wrong: str,
) -> None:
    """Dates other than YYYY-MM-DDTHH:MM:SS+09:00, a search longer than the span, or one
    ending before it starts: 422, a permanent error."""
    sim, _app = await served(start_simulator)
    markets = await _markets(sim, make_markets, tmp_path)
    call = {"endpoint": "orders", "params": {"start_date": start, "end_date": end}}
    with pytest.raises(PermanentError, match=wrong) as raised:
        await markets.run(_run("call", call), Lane.LOW)
    assert raised.value.status == 422


async def test_the_simulator_refuses_an_offset_past_its_maximum(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    sim, _app = await served(start_simulator)
    markets = await _markets(sim, make_markets, tmp_path)
    day = datetime.now(UTC)
    params = {
        "start_date": cafe24_time(day - timedelta(days=1)),
        "end_date": cafe24_time(day),
        "offset": 15001,
    }
    with pytest.raises(PermanentError, match="offset"):
        await markets.run(_run("call", {"endpoint": "orders", "params": params}), Lane.LOW)


async def test_a_bucket_fuller_than_lanes_knew_is_waited_for(
    start_simulator: StartSimulator,
    make_markets: MakeMarkets,
    tmp_path: Path,
    redis_client: aioredis.Redis,
) -> None:
    """Another tool of the mall's filled the product bucket to 38 of 40: lanes' first
    read is told `X-Api-Call-Limit: 40/40` (its product and variants calls), raises the
    budget's bucket by what it had not admitted, and the reads after it wait for the
    refill instead of meeting a 429."""
    sim, app = await served(start_simulator, leak=2.0)
    malls = cafe24_malls(app)
    for _ in range(38):
        assert malls.take(MALL, "product")[0]
    markets = await _markets(sim, make_markets, tmp_path)
    await markets.run(_run("get_product", {"product_no": 1}), Lane.HIGH)
    seconds, micros = await redis_client.time()
    held = await redis_client.get(f"lanes:{{cafe24:product:{MALL}}}:bucket") or b"0"
    tat = int(held.split(b":")[0])  # "tat:raised"
    assert (tat - seconds * 1_000_000 - micros) / 500_000 > 30  # calls lanes now counts
    for _ in range(4):
        await markets.run(_run("get_product", {"product_no": 1}), Lane.HIGH)
    assert malls.refused_calls == 0


async def test_the_simulator_bucket_takes_40_then_refuses_with_its_headers(
    start_simulator: StartSimulator,
) -> None:
    """Straight at the simulator: a full bucket of 40 answers 429, every answer carries
    X-Api-Call-Limit, and the usage limit's headers; an unknown mall is 404, a token of
    another mall 401."""
    app = cafe24_app(leak=0.001, usage_limit=1000)
    sim = await start_simulator(app)
    malls = cafe24_malls(app)
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "refresh_token", "refresh_token": DEFAULT_MALLS[MALL]}
        basic = base64.b64encode(b"cafe24-client-id:cafe24-client-secret").decode()
        auth = {"Authorization": f"Basic {basic}"}
        async with session.post(
            f"{sim.url}/{MALL}/api/v2/oauth/token", data=form, headers=auth
        ) as r:
            token = (await r.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        limits = []
        for _ in range(41):
            async with session.get(
                f"{sim.url}/{MALL}/api/v2/admin/products/1", headers=headers
            ) as answer:
                limits.append((answer.status, answer.headers["X-Api-Call-Limit"]))
                usage = (
                    answer.headers["X-Cafe24-Call-Usage"],
                    answer.headers["X-Cafe24-Call-Remain"],
                )
        assert limits[0] == (200, "1/40")
        assert limits[39] == (200, "40/40")
        assert limits[40][0] == 429
        assert usage == ("4.00", "960")
        # Another API of the mall has its own bucket.
        async with session.get(
            f"{sim.url}/{MALL}/api/v2/admin/products/1/variants", headers=headers
        ) as answer:
            assert answer.status == 200
        async with session.get(
            f"{sim.url}/{MALLS[1]}/api/v2/admin/products/1", headers=headers
        ) as r:
            assert r.status == 401
        async with session.get(f"{sim.url}/nomall/api/v2/admin/products/1", headers=headers) as r:
            assert r.status == 404
        # The refresh token just used is void.
        async with session.post(
            f"{sim.url}/{MALL}/api/v2/oauth/token", data=form, headers=auth
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "invalid_grant"
    assert malls.refused_refresh == 1


async def test_the_usage_limit_near_spent_pauses_the_mall_without_a_429(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """The mall-wide usage limit at 90 % (X-Cafe24-Call-Usage, 9 of 10 calls) pauses every
    budget of the mall, as a quota answer does: the next call of another API waits for
    it (here past its deadline) and is never sent into the 429; another mall goes on."""
    sim, app = await served(start_simulator, usage_limit=10)
    malls = cafe24_malls(app)
    markets = await _markets(sim, make_markets, tmp_path)
    client = markets.client("cafe24")
    product = Call("product", path={"product_no": 1})
    for _ in range(9):
        await client.send(product, Lane.HIGH, seller=MALL)
    for endpoint in ("product", "variants", "orders", "inventory"):
        usage = await markets._limiter.usage.read(client.budget(endpoint, MALL))
        assert usage.quota_pause == pytest.approx(30, abs=1)
    with pytest.raises(RetryLater):
        await client.send(
            Call("variants", path={"product_no": 1}),
            Lane.HIGH,
            seller=MALL,
            deadline=time.monotonic() + 0.2,
        )
    await client.send(product, Lane.HIGH, seller=MALLS[1])
    assert malls.refused_calls == 0
    assert (await markets._limiter.usage.read(client.budget("product", MALLS[1]))).quota_pause == 0
