"""Fixtures for the markets tests: simulators on loopback, configs, `Markets` factories."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import web

from lanes import LanePolicies, Limiter, RedisStore, Settings
from markets import Backoff, JobRequest, Markets
from markets.catalogue import parse_with_catalogues
from markets.config import Config
from markets.coupang.simulator import coupang_app
from markets.naver.auth import NaverAuth, NaverTokens
from markets.naver.simulator import naver_app
from markets.simulators import SimState, serve, sim_state

COUPANG_VENDOR = "A00012345"
# A vendor's keys are its own (never market-wide): `<vendorId>_<name>`.
COUPANG_KEYS = {
    f"{COUPANG_VENDOR}_access_key": "test-access-key",
    f"{COUPANG_VENDOR}_secret_key": "test-secret-key",
}
NAVER_APP = {"client_id": "aaaabbbbcccc", "client_secret": "$2a$04$abcdefghijklmnopqrstuu"}
FAST = Backoff(initial=0.02, cap=0.1)


@dataclass(frozen=True)
class Running:
    """A simulator being served: its base URL and its counters/faults."""

    url: str
    state: SimState


@pytest.fixture
async def exit_stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
def start_simulator(exit_stack: AsyncExitStack) -> Callable[[web.Application], Awaitable[Running]]:
    """Factory: `await start_simulator(coupang_app(...))` serves it until the test ends."""

    async def start(app: web.Application) -> Running:
        url = await exit_stack.enter_async_context(serve(app))
        return Running(url, sim_state(app))

    return start


@pytest.fixture
async def coupang_sim(start_simulator: Callable[[web.Application], Awaitable[Running]]) -> Running:
    """The Coupang simulator with its defaults (10 calls/s per vendor)."""
    return await start_simulator(coupang_app())


@pytest.fixture
async def naver_sim(start_simulator: Callable[[web.Application], Awaitable[Running]]) -> Running:
    """The Naver simulator with its defaults (2 rps per API, burst 4)."""
    return await start_simulator(naver_app())


def market_settings(**credentials: dict[str, str]) -> Settings:
    chosen = credentials or {"coupang": COUPANG_KEYS, "naver": NAVER_APP}
    return Settings(credentials=chosen)


def markets_config(
    *, coupang: str | None = None, naver: str | None = None, extra: dict[str, Any] | None = None
) -> Config:
    """A config with the catalogue markets pointed at simulators, plus `extra` market tables."""
    tables: dict[str, Any] = {}
    if coupang is not None:
        tables["coupang"] = {"catalogue": "coupang", "base_url": coupang}
    if naver is not None:
        tables["naver"] = {"catalogue": "naver", "base_url": f"{naver}/external"}
    for name, table in (extra or {}).items():
        tables[name] = {**tables.get(name, {}), **table}
    return parse_with_catalogues({"markets": tables}, "test")


@pytest.fixture
def make_markets(
    store: RedisStore, exit_stack: AsyncExitStack
) -> Callable[..., Awaitable[Markets]]:
    """Factory: `await make_markets(config, settings=..., policies=..., backoff=...)`; each
    call is a separate process's `Markets` (own session) on the shared test Redis."""

    async def make(
        config: Config,
        *,
        settings: Settings | None = None,
        policies: LanePolicies | None = None,
        backoff: Backoff = FAST,
    ) -> Markets:
        # The test Redis is seconds old: the restart guard (tested on its own) would hold
        # every budget's first window full.
        limiter = await exit_stack.enter_async_context(
            Limiter(store.client, policies or config.lanes, restart_guard=False)
        )
        markets = Markets(
            config, settings or market_settings(), limiter, store.client, backoff=backoff
        )
        return await exit_stack.enter_async_context(markets)

    return make


@dataclass
class Scripted:
    """A test server that answers `/answer` with the queued (status, headers, body) in turn,
    then 200; `seen` counts requests."""

    url: str
    answers: list[tuple[int, dict[str, str], Any]]
    seen: list[str]

    @property
    def table(self) -> AcmeTable:
        return scripted_table(self.url)


def _scripted_app(
    answers: list[tuple[int, dict[str, str], Any]], seen: list[str]
) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        if answers:
            status, headers, body = answers.pop(0)
            return web.json_response(body, status=status, headers=headers)
        return web.json_response({"ok": True, "query": dict(request.query)})

    async def slow(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        await asyncio.sleep(1.5)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/answer", answer)
    app.router.add_get("/items/{item}", answer)
    app.router.add_get("/slow", slow)
    return app


@pytest.fixture
async def scripted(exit_stack: AsyncExitStack) -> Scripted:
    answers: list[tuple[int, dict[str, str], Any]] = []
    seen: list[str] = []
    url = await exit_stack.enter_async_context(serve(_scripted_app(answers, seen)))
    return Scripted(url, answers, seen)


@dataclass(frozen=True)
class AcmeTable:
    """Market "acme" (declared: no catalogue, no auth) as one fake market serves it: its
    URL, its endpoints (name: method, path), and the limit, timeout and options its
    tests run with by default. `Scripted.table` and `AcmeMarket.table` are theirs."""

    url: str
    endpoints: Mapping[str, tuple[str, str]]
    rps: float
    timeout: float
    options: Mapping[str, str] = field(default_factory=dict)

    def raw(self, *, rps: float | None = None, timeout: float | None = None) -> dict[str, Any]:
        """The `[markets.acme]` table."""
        limit = rps or self.rps
        table: dict[str, Any] = {
            "base_url": self.url,
            "timeout": timeout or self.timeout,
            "endpoints": {
                name: {"method": method, "path": path, "rps": limit}
                for name, (method, path) in self.endpoints.items()
            },
        }
        if self.options:
            table["options"] = dict(self.options)
        return table


def scripted_table(url: str) -> AcmeTable:
    """Market "acme" on a `Scripted` server at `url`."""
    return AcmeTable(
        url,
        {
            "answer": ("GET", "/answer"),
            "post": ("POST", "/answer"),
            "item": ("GET", "/items/{item}"),
            "slow": ("GET", "/slow"),
        },
        rps=50,
        timeout=0.5,
        options={"cooldown_seconds": "0.5"},
    )


class ServesAcme(Protocol):
    @property
    def table(self) -> AcmeTable: ...


def acme_config(
    market: AcmeTable | ServesAcme,
    *,
    rps: float | None = None,
    timeout: float | None = None,
    lanes: dict[str, Any] | None = None,
) -> Config:
    """The config declaring market "acme" as `market` serves it."""
    table = market if isinstance(market, AcmeTable) else market.table
    raw = {"lanes": lanes or {}, "markets": {"acme": table.raw(rps=rps, timeout=timeout)}}
    return parse_with_catalogues(raw, "test")


def acme_toml(market: AcmeTable | ServesAcme, path: Path, *, rps: float | None = None) -> Path:
    """The same config as a TOML file, for worker subprocesses."""
    table = (market if isinstance(market, AcmeTable) else market.table).raw(rps=rps)
    sections = {f"endpoints.{name}": fields for name, fields in table.pop("endpoints").items()}
    if "options" in table:
        sections["options"] = table.pop("options")
    lines = ["[markets.acme]", *(f"{key} = {json.dumps(value)}" for key, value in table.items())]
    for name, fields in sections.items():
        lines.append(f"[markets.acme.{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in fields.items())
    path.write_text("\n".join(lines) + "\n")
    return path


MakeMarkets = Callable[..., Awaitable[Markets]]
StartSimulator = Callable[[web.Application], Awaitable[Running]]


def naver_tokens(markets: Markets, name: str = "naver") -> NaverTokens:
    """The token cache behind market `name`'s Naver auth."""
    auth = markets.client(name).auth
    assert isinstance(auth, NaverAuth)
    return auth.tokens


def coupang_job(kind: str, **payload: Any) -> JobRequest:
    """A Coupang job of the test vendor (`COUPANG_VENDOR`)."""
    return JobRequest(kind, "coupang", COUPANG_VENDOR, dict(payload))


def naver_job(kind: str, **payload: Any) -> JobRequest:
    """A Naver job of the test seller `seller-1`."""
    return JobRequest(kind, "naver", "seller-1", dict(payload))
