"""Shared fixtures: a real redis-server and moto's SQS server, each started by the tests.

Tests never touch a Redis or queue they did not start.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from lanes import Budget, LanePolicies, Limiter, RedisStore, Window
from scripts.local.services import MotoServer, RedisServer

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def _ours(server: RedisServer) -> bool:
    """Is the Redis answering on `server.port` a child of this process? Between
    `free_port()` and the bind another process may take the port (xdist workers start
    their servers at the same moment); a test must never touch that one's Redis."""
    try:
        with redis.Redis(port=server.port, socket_timeout=5) as client:
            pid = int(client.info("server")["process_id"])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (redis.RedisError, OSError):
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()


def start_own_redis() -> RedisServer:
    """A redis-server on a free port, started by and answering for this process."""
    for _ in range(3):
        server = RedisServer()
        server.start()
        if _ours(server):
            return server
        server.stop()
    raise RuntimeError("no free port for a redis-server of our own")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server on a free port for the whole session (one per xdist worker)."""
    server = start_own_redis()
    yield server
    server.stop()


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    """A connection owner to the test Redis, emptied before each test."""
    async with RedisStore(redis_server.url) as owned:
        await owned.client.flushdb()
        yield owned


@dataclass(frozen=True)
class OwnRedis:
    server: RedisServer
    store: RedisStore


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    """A redis-server of the test's own, to stop and restart (empty), and a store on it
    whose calls give up after 0.5 s."""
    server = start_own_redis()
    try:
        async with RedisStore(server.url, socket_timeout=0.5) as store:
            yield OwnRedis(server, store)
    finally:
        server.stop()


@pytest.fixture
def redis_client(store: RedisStore) -> aioredis.Redis:
    return store.client


@pytest.fixture
async def make_limiter(store: RedisStore) -> AsyncIterator[Callable[..., Limiter]]:
    """Factory: `make_limiter(policies=..., horizon=..., restart_guard=..., tolerance=...)`.

    The restart guard (docs/DESIGN.md rule 10) is off by default here: this Redis is
    the tests' own, and each test empties it; the guard has its own tests.
    """
    made: list[Limiter] = []

    def make(
        policies: LanePolicies | None = None,
        horizon: float = 30.0,
        *,
        restart_guard: bool = False,
        tolerance: float | None = None,
    ) -> Limiter:
        limiter = Limiter(
            store.client,
            policies or LanePolicies(),
            horizon=horizon,
            restart_guard=restart_guard,
            tolerance=tolerance,
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


@pytest.fixture
def make_budget() -> Callable[..., Budget]:
    """Factory: `make_budget(limit, seconds, name=..., margin_ms=..., extra=[(l, s)])`."""

    def make(
        limit: int = 10,
        seconds: float = 1.0,
        *,
        name: str = "acme:orders",
        margin_ms: float = 0.0,
        extra: tuple[tuple[int, float], ...] = (),
    ) -> Budget:
        windows = tuple(
            Window(limit=each_limit, seconds=each_seconds)
            for each_limit, each_seconds in ((limit, seconds), *extra)
        )
        return Budget(name=name, windows=windows, margin_ms=margin_ms)

    return make


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's SQS server over HTTP for the whole session."""
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sqs_endpoint(moto_server: MotoServer) -> str:
    return moto_server.url


# Each area keeps its own fixtures in a plugin module beside the tests.
pytest_plugins = [
    "tests.fixtures_markets",
    "tests.fixtures_worker",
    "tests.fixtures_scripts",
    "tests.fixtures_api",
]
