"""Naver OAuth2: the bcrypt client_secret_sign, and one token shared by every worker."""

from __future__ import annotations

import asyncio

import pytest

from lanes import Lane, RedisStore
from markets import JobRequest, PermanentError
from markets.naver.auth import client_secret_sign
from markets.naver.simulator import naver_app
from tests.fixtures_markets import (
    NAVER_APP,
    MakeMarkets,
    Running,
    StartSimulator,
    market_settings,
    markets_config,
    naver_tokens,
)

PRODUCT = {"origin_product_no": 5000000}


def test_client_secret_sign_matches_the_published_vector() -> None:
    """base64(bcrypt(client_id + '_' + timestamp, secret)) gives Naver's vector."""
    sign = client_secret_sign("aaaabbbbcccc", "$2a$10$abcdefghijklmnopqrstuu", 1643961623299)
    assert sign == (
        "JDJhJDEwJGFiY2RlZmdoaWprbG1ub3BxcnN0dXVCVldZSk42T0VPdEx1OFY0cDQxa2IuTnpVaUEzbmsy"
    )


@pytest.mark.slow
async def test_token_is_fetched_once_by_many_concurrent_workers(
    start_simulator: StartSimulator, make_markets: MakeMarkets, store: RedisStore
) -> None:
    """Four worker processes, eight calls each at once: one token request in all."""
    naver_sim = await start_simulator(naver_app(rate=20))
    config = markets_config(
        naver=naver_sim.url, extra={"naver": {"groups": {"origin_products": {"rps": 20}}}}
    )
    workers = [await make_markets(config) for _ in range(4)]
    request = JobRequest("get_product", "naver", "seller-1", PRODUCT)
    await asyncio.gather(*(each.run(request, Lane.HIGH) for each in workers for _ in range(8)))
    assert naver_sim.state.arrived["token"] == 1
    assert sum(naver_tokens(each).fetched for each in workers) == 1
    assert naver_sim.state.served["origin_product"] == 32
    assert await store.client.pttl("lanes:token:naver:aaaabbbbcccc") > 0


async def test_a_new_process_reuses_the_cached_token(
    naver_sim: Running, make_markets: MakeMarkets
) -> None:
    """A worker started later finds the token in Redis and never asks the market."""
    config = markets_config(naver=naver_sim.url)
    request = JobRequest("get_product", "naver", "seller-1", PRODUCT)
    await (await make_markets(config)).run(request, Lane.HIGH)
    later = await make_markets(config)
    await later.run(request, Lane.HIGH)
    assert naver_sim.state.arrived["token"] == 1
    assert naver_tokens(later).fetched == 0


async def test_a_refused_token_is_replaced_once(
    start_simulator: StartSimulator, make_markets: MakeMarkets, store: RedisStore
) -> None:
    """A 401 on a cached token (revoked) fetches a fresh one and the call succeeds."""
    sim = await start_simulator(naver_app())
    await store.client.set("lanes:token:naver:aaaabbbbcccc", "revoked", px=600_000)
    markets = await make_markets(markets_config(naver=sim.url))
    await markets.run(JobRequest("get_product", "naver", "s", PRODUCT), Lane.HIGH)
    assert sim.state.statuses[401] == 1
    assert sim.state.arrived["token"] == 1


@pytest.mark.slow
async def test_wrong_client_secret_is_permanent(
    naver_sim: Running, make_markets: MakeMarkets
) -> None:
    """A wrong secret makes the token request fail with the gateway's 401: permanent."""
    settings = market_settings(
        naver={"client_id": "aaaabbbbcccc", "client_secret": "$2a$04$zzzzzzzzzzzzzzzzzzzzzu"}
    )
    markets = await make_markets(markets_config(naver=naver_sim.url), settings=settings)
    with pytest.raises(PermanentError) as raised:
        await markets.run(JobRequest("get_product", "naver", "s", PRODUCT), Lane.HIGH)
    assert (raised.value.status, raised.value.code) == (401, "GW.AUTHN")


async def test_missing_credentials_are_permanent_and_name_the_variable(
    naver_sim: Running, make_markets: MakeMarkets
) -> None:
    """No client_secret: a PermanentError naming LANES_CREDENTIALS__NAVER__CLIENT_SECRET,
    before any request is sent."""
    settings = market_settings(naver={"client_id": "aaaabbbbcccc"})
    markets = await make_markets(markets_config(naver=naver_sim.url), settings=settings)
    with pytest.raises(PermanentError, match="LANES_CREDENTIALS__NAVER__CLIENT_SECRET"):
        await markets.run(JobRequest("get_product", "naver", "s", PRODUCT), Lane.HIGH)
    assert sum(naver_sim.state.arrived.values()) == 0


@pytest.mark.slow
async def test_an_ageing_token_is_refreshed_once_and_takes_budget(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """A token near its end is replaced by one fetch for all callers; each fetch is admitted
    by the token endpoint's own budget."""
    sim = await start_simulator(naver_app(token_ttl=3, rate=20))
    config = markets_config(
        naver=sim.url, extra={"naver": {"groups": {"origin_products": {"rps": 20}}}}
    )
    markets = await make_markets(config)
    request = JobRequest("get_product", "naver", "seller-1", PRODUCT)
    await markets.run(request, Lane.HIGH)
    await asyncio.sleep(1.7)  # past half of the 3-second life: time to refresh
    await asyncio.gather(*(markets.run(request, Lane.HIGH) for _ in range(6)))
    assert sim.state.tokens_issued == 2
    budget = markets.client("naver").budget("token", None)
    usage = await markets._limiter.usage.read(budget)
    assert usage.in_window[Lane.HIGH] >= 1


@pytest.mark.slow
async def test_seller_tokens_are_cached_per_account_for_every_process(
    naver_sim: Running, make_markets: MakeMarkets
) -> None:
    """type=SELLER: one token per account in Redis; a second process reuses each one."""
    config = markets_config(
        naver=naver_sim.url, extra={"naver": {"options": {"token_type": "SELLER"}}}
    )
    settings = market_settings(
        naver={**NAVER_APP, "s-1_account_id": "acc-1", "s-2_account_id": "acc-2"}
    )
    first = await make_markets(config, settings=settings)
    for seller in ("s-1", "s-2"):
        await first.run(JobRequest("get_product", "naver", seller, PRODUCT), Lane.HIGH)
    later = await make_markets(config, settings=settings)
    for seller in ("s-1", "s-2"):
        await later.run(JobRequest("get_product", "naver", seller, PRODUCT), Lane.HIGH)
    assert naver_sim.state.tokens_issued == 2
    assert naver_tokens(later).fetched == 0
    assert set(naver_sim.state.accounts) == {"acc-1", "acc-2"}
