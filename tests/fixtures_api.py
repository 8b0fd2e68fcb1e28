"""Fixtures for the HTTP API tests: settings on the test Redis, moto and the market
simulators, lane queues provisioned under a fresh prefix, and httpx clients on the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lanes import Lane, RedisStore
from markets.config import Config
from scripts.api.app import create_app
from scripts.api.settings import ApiSettings
from scripts.local.services import RedisServer
from scripts.tools.provision import provision
from tests.fixtures_markets import COUPANG_KEYS, COUPANG_VENDOR, NAVER_APP, Running, markets_config
from worker.queues import QueueName
from worker.sqs import SqsClient

__all__ = [
    "COUPANG_ORDER",
    "KEY",
    "NAVER_ORDER",
    "NAVER_SELLER",
    "ApiEnv",
    "MakeClient",
    "collect_job",
]

KEY = "test-api-key-0f9e8d7c6b5a"
NAVER_SELLER = "seller-1"
COUPANG_ORDER = 25_000_000_003  # an orderId of the Coupang simulator's default data
NAVER_ORDER = "2025000000000003"  # an orderId of the Naver simulator's default data


@dataclass
class ApiEnv:
    settings: ApiSettings
    config: Config
    sqs: SqsClient

    async def depth(self, market: str, lane: Lane) -> int:
        """Messages waiting in the lane queue (moto counts exactly)."""
        url = await self.sqs.queue_url(QueueName(self.settings.queue_prefix, market, lane).queue)
        return int((await self.sqs.attributes(url))["ApproximateNumberOfMessages"])


_prefixes = iter(range(10**6))


@pytest.fixture
async def api_env(
    store: RedisStore,
    redis_server: RedisServer,
    sqs_endpoint: str,
    sqs: SqsClient,
    coupang_sim: Running,
    naver_sim: Running,
    tmp_path: Path,
) -> ApiEnv:
    """Settings and config for Coupang and Naver on their simulators; lane queues provisioned
    under a fresh prefix; Redis emptied."""
    prefix = f"api{next(_prefixes)}x{id(tmp_path) % 10**6}"
    config = markets_config(coupang=coupang_sim.url, naver=naver_sim.url)
    await provision(
        sqs, prefix=prefix, markets=["coupang", "naver"],
        visibility_timeout=10,
    )  # fmt: skip
    settings = ApiSettings(
        redis_url=redis_server.url,
        sqs_endpoint_url=sqs_endpoint,
        queue_prefix=prefix,
        credentials={"coupang": COUPANG_KEYS, "naver": NAVER_APP},
        api_keys=(KEY,),  # type: ignore[arg-type]
        results_url=f"file:{tmp_path / 'results.jsonl'}",
        visibility_timeout=10,
        wait_seconds=1,
        grace_seconds=2.0,
        concurrency=4,
    )
    return ApiEnv(settings, config, sqs)


MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
def make_client(exit_stack: AsyncExitStack) -> MakeClient:
    """Factory: `await make_client(env, key=KEY)`, an httpx client on the app (lifespan run)."""

    async def make(
        env: ApiEnv, *, key: str | None = KEY, insecure_local: bool = False
    ) -> httpx.AsyncClient:
        app = create_app(env.settings, env.config, insecure_local=insecure_local)
        await exit_stack.enter_async_context(app.router.lifespan_context(app))
        # This Redis is the tests' own and emptied: a budget's first window would wait as
        # if data were lost (rule 10, tested in test_budget_rules).
        app.state.runtime.limiter._restart_guard = False
        headers = {"X-API-Key": key} if key else {}
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(
            transport=transport, base_url="http://lanes.test", headers=headers
        )
        return await exit_stack.enter_async_context(client)

    return make


@pytest.fixture
async def client(api_env: ApiEnv, make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client(api_env)


def collect_job(market: str, number: int, **extra: Any) -> dict[str, Any]:
    """A `collect_order` job body, as the API takes it, of market "coupang" or "naver": the
    test seller's order `number` (ids of the simulators' default data)."""
    seller, payload = {
        "coupang": (COUPANG_VENDOR, {"shipment_box_id": 600_000_000 + number}),
        "naver": (NAVER_SELLER, {"order_id": str(int(NAVER_ORDER) + number)}),
    }[market]
    body = {"kind": "collect_order", "market": market, "seller": seller, "payload": payload}
    return {**body, **extra}
