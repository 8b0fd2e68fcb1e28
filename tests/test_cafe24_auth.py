"""Cafe24 OAuth per mall: one refresh per mall across workers, the rotating refresh token
kept durably in the credentials file, recovery of a late answer and of a Redis flush, and a
refused mall as one permanent error."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lanes import Lane, RedisStore, Settings
from lanes.errors import ConfigError
from markets import JobRequest, Markets, PermanentError, RetryLater
from markets.cafe24.auth import Cafe24Auth, Cafe24Tokens
from markets.cafe24.simulator import DEFAULT_CAFE24_APP, DEFAULT_MALLS, cafe24_app, cafe24_malls
from markets.catalogue import parse_with_catalogues
from markets.config import Config
from tests.fixtures_markets import MakeMarkets, Running, StartSimulator

CLIENT_ID, CLIENT_SECRET = next(iter(DEFAULT_CAFE24_APP.items()))
MALLS = tuple(DEFAULT_MALLS)
PRODUCT = {"product_no": 3}
NO_SETTINGS = Settings(credentials={})


def credentials_file(tmp_path: Path) -> Path:
    """The app's keys and each mall's installed refresh token, as a JSON credentials file."""
    path = tmp_path / "credentials.json"
    malls = {mall: {"refresh_token": token} for mall, token in DEFAULT_MALLS.items()}
    path.write_text(
        json.dumps({"cafe24": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **malls}})
    )
    return path


def cafe24_config(url: str, credentials: str, **table: Any) -> Config:
    """The cafe24 catalogue pointed at a simulator, its malls under `/{seller}/api/v2`."""
    market = {
        "catalogue": "cafe24",
        "base_url": f"{url}/{{seller}}/api/v2",
        "options": {"credentials": credentials},
        **table,
    }
    return parse_with_catalogues({"markets": {"cafe24": market}}, "test")


def stored(path: Path, mall: str) -> dict[str, str]:
    entry: dict[str, str] = json.loads(path.read_text())["cafe24"][mall]
    return entry


def tokens(markets: Markets) -> Cafe24Tokens:
    auth = markets.client("cafe24").auth
    assert isinstance(auth, Cafe24Auth)
    return auth.tokens


async def served(
    start_simulator: StartSimulator, **options: Any
) -> tuple[Running, web.Application]:
    app = cafe24_app(**options)
    return await start_simulator(app), app


def product(mall: str) -> JobRequest:
    return JobRequest("get_product", "cafe24", mall, PRODUCT)


async def test_three_malls_through_one_app_each_on_its_own_token(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """Three malls, one app: each mall refreshes once on its own host with its own refresh
    token, its calls carry its own access token, and its new refresh token is in the file."""
    sim, app = await served(start_simulator)
    path = credentials_file(tmp_path)
    markets = await make_markets(cafe24_config(sim.url, f"file:{path}"), settings=NO_SETTINGS)
    results = await asyncio.gather(*(markets.run(product(mall), Lane.HIGH) for mall in MALLS))
    assert [result.data["product"]["product_name"] for result in results] == [
        f"{mall} 상품 3" for mall in MALLS
    ]
    assert sim.state.keys_seen == {f"{CLIENT_ID}/{mall}": 1 for mall in MALLS}
    assert sim.state.accounts == {mall: 2 for mall in MALLS}  # product and variants
    malls = cafe24_malls(app)
    for mall in MALLS:
        entry = stored(path, mall)
        assert entry["refresh_token"] == malls.refresh_token(mall)
        assert entry["previous_refresh_token"] == DEFAULT_MALLS[mall]


@pytest.mark.slow
async def test_two_workers_refreshing_one_mall_at_once_leave_one_valid_token(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """Two worker processes, eight jobs each for one mall at once: one refresh; once the
    access token expires both see 401 together and again only one refreshes. No refresh
    token is ever refused and the file holds the one Cafe24 accepts."""
    sim, app = await served(start_simulator)
    path = credentials_file(tmp_path)
    config = cafe24_config(sim.url, f"file:{path}", endpoints={"product": {"rps": 40}})
    workers = [await make_markets(config, settings=NO_SETTINGS) for _ in range(2)]
    request = JobRequest("get_product", "cafe24", MALLS[0], {**PRODUCT, "variants": False})
    await asyncio.gather(*(each.run(request, Lane.HIGH) for each in workers for _ in range(8)))
    assert sim.state.tokens_issued == 1
    sim.state.advance(7200)  # every access token expires
    await asyncio.gather(*(each.run(request, Lane.HIGH) for each in workers for _ in range(8)))
    assert sim.state.tokens_issued == 2
    assert sum(tokens(each).refreshed for each in workers) == 2
    assert cafe24_malls(app).refused_refresh == 0
    assert stored(path, MALLS[0])["refresh_token"] == cafe24_malls(app).refresh_token(MALLS[0])


async def test_a_refresh_whose_answer_comes_late_is_kept(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """The job that started a refresh gives up before Cafe24's answer arrives (its deadline):
    the refresh goes on, the rotated token is written, and the next job uses it: no lock-out."""
    sim, app = await served(start_simulator)
    sim.state.faults.lose_answer["token"] = 1
    sim.state.faults.lost_answer_delay = 1.0
    path = credentials_file(tmp_path)
    markets = await make_markets(cafe24_config(sim.url, f"file:{path}"), settings=NO_SETTINGS)
    with pytest.raises(RetryLater):
        await markets.run(product(MALLS[0]), Lane.HIGH, deadline=time.monotonic() + 0.2)
    task = tokens(markets)._tasks[MALLS[0]]
    await task
    assert stored(path, MALLS[0])["refresh_token"] == cafe24_malls(app).refresh_token(MALLS[0])
    await markets.run(product(MALLS[0]), Lane.HIGH)
    assert sim.state.tokens_issued == 1
    assert cafe24_malls(app).refused_refresh == 0


async def test_a_refresh_cut_off_before_cafe24_acted_keeps_the_old_token(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """A refresh that failed before Cafe24 acted (no budget before the deadline) leaves the
    installed token in the file, and the next job refreshes with it."""
    sim, app = await served(start_simulator)
    path = credentials_file(tmp_path)
    markets = await make_markets(cafe24_config(sim.url, f"file:{path}"), settings=NO_SETTINGS)
    original = tokens(markets)._fetch
    failures = [1]

    async def flaky(*args: Any) -> Any:
        if failures:
            failures.pop()
            raise RetryLater(0.1, "simulated")
        return await original(*args)

    tokens(markets)._fetch = flaky
    with pytest.raises(RetryLater):
        await markets.run(product(MALLS[1]), Lane.HIGH)
    assert stored(path, MALLS[1])["refresh_token"] == DEFAULT_MALLS[MALLS[1]]
    await markets.run(product(MALLS[1]), Lane.HIGH)
    assert cafe24_malls(app).refused_refresh == 0


async def test_a_redis_flush_loses_no_refresh_token(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path, store: RedisStore
) -> None:
    """After a refresh, Redis is emptied and a new process starts: it refreshes with the
    token in the file (the truth), which Cafe24 accepts."""
    sim, app = await served(start_simulator)
    path = credentials_file(tmp_path)
    config = cafe24_config(sim.url, f"file:{path}")
    await (await make_markets(config, settings=NO_SETTINGS)).run(product(MALLS[2]), Lane.HIGH)
    await store.client.flushdb()
    later = await make_markets(config, settings=NO_SETTINGS)
    await later.run(product(MALLS[2]), Lane.HIGH)
    assert sim.state.tokens_issued == 2
    assert cafe24_malls(app).refused_refresh == 0
    assert stored(path, MALLS[2])["refresh_token"] == cafe24_malls(app).refresh_token(MALLS[2])


async def test_a_refused_refresh_token_fails_the_mall_once_with_its_reason(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path, store: RedisStore
) -> None:
    """A mall whose refresh token Cafe24 refuses (the app was reinstalled elsewhere) is a
    permanent error naming the mall and saying to reinstall; later jobs, in this process or
    a new one after a Redis flush, fail the same way without asking Cafe24 again."""
    sim, app = await served(start_simulator)
    cafe24_malls(app).install(MALLS[0])
    path = credentials_file(tmp_path)
    config = cafe24_config(sim.url, f"file:{path}")
    markets = await make_markets(config, settings=NO_SETTINGS)
    with pytest.raises(PermanentError) as first:
        await markets.run(product(MALLS[0]), Lane.HIGH)
    assert MALLS[0] in str(first.value)
    assert "reinstall the app" in str(first.value)
    with pytest.raises(PermanentError) as again:
        await markets.run(product(MALLS[0]), Lane.HIGH)
    assert str(again.value) == str(first.value)
    await store.client.flushdb()
    later = await make_markets(config, settings=NO_SETTINGS)
    with pytest.raises(PermanentError) as after_flush:
        await later.run(product(MALLS[0]), Lane.HIGH)
    assert str(after_flush.value) == str(first.value)
    assert sim.state.arrived["token"] == 1
    assert stored(path, MALLS[0])["refused"] in str(first.value)
    # The other malls are not touched by it.
    await markets.run(product(MALLS[1]), Lane.HIGH)


@pytest.mark.parametrize("spec", ["env", "file:/etc/lanes/credentials.toml"])
def test_an_unwritable_credential_source_is_refused_at_load(spec: str) -> None:
    """The environment or a TOML file cannot take the refresh token that changes on every
    refresh: the TOML is refused when loaded, in one line naming where to keep them."""
    with pytest.raises(ConfigError) as raised:
        cafe24_config("https://example.invalid", spec)
    assert str(raised.value).startswith("test: markets.cafe24.options.credentials: ")
    assert "file:<path>.json, secretsmanager:<prefix> or ssm:<prefix>" in str(raised.value)
    assert "\n" not in str(raised.value)


async def test_an_answer_lost_on_the_wire_after_rotation_is_named_as_the_cause(
    start_simulator: StartSimulator, make_markets: MakeMarkets, tmp_path: Path
) -> None:
    """What cannot be recovered (Cafe24 documents no grace for a rotated token): the token
    call times out after Cafe24 rotated; the next refresh is refused, and the mall's
    permanent error says an answer was lost, not that the seller revoked the app."""
    sim, app = await served(start_simulator)
    sim.state.faults.lose_answer["token"] = 1
    sim.state.faults.lost_answer_delay = 1.0
    path = credentials_file(tmp_path)
    config = cafe24_config(sim.url, f"file:{path}", endpoints={"token": {"timeout": 0.3}})
    markets = await make_markets(config, settings=NO_SETTINGS)
    with pytest.raises(PermanentError, match="answer was lost after Cafe24 rotated"):
        await markets.run(product(MALLS[0]), Lane.HIGH)
    assert sim.state.tokens_issued == 1
    assert cafe24_malls(app).refused_refresh >= 1
