"""The HTTP API through httpx against the real app: real Redis, moto's SQS server, the market
simulators, and (for a queued collection) a real dispatcher in this event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog

from lanes import Lane, Limiter, RedisStore
from lanes.errors import ConfigError
from lanes.logs import configure_logging
from markets import JobRequest, MarketError, Markets
from markets.config import Config
from scripts.api import app as api
from scripts.api.app import create_app
from scripts.api.settings import ApiSettings
from scripts.local.services import free_port
from tests.fixtures_api import (
    COUPANG_ORDER,
    KEY,
    NAVER_ORDER,
    NAVER_SELLER,
    ApiEnv,
    MakeClient,
    collect_job,
)
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    MakeMarkets,
    Running,
)
from tests.fixtures_scripts import CliRun, LanesEnv
from tests.fixtures_worker import wait_until
from worker.daemon import build_dispatcher
from worker.runtime import Runtime

# --- POST /v1/jobs ----------------------------------------------------------------------


@pytest.mark.slow
async def test_batch_with_one_bad_job_is_refused_and_nothing_is_sent(
    api_env: ApiEnv, client: httpx.AsyncClient
) -> None:
    """100 jobs, one with a bad payload: 422 naming its index, field and reason; no message
    reaches the queue."""
    jobs = [collect_job("coupang", i) for i in range(100)]
    jobs[41]["payload"] = {"shipment_box_id": "not-a-number"}
    answer = await client.post("/v1/jobs", params={"lane": "low"}, json=jobs)
    assert answer.status_code == 422
    body = answer.json()
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(41, "payload.shipment_box_id")]
    assert "integer" in body["errors"][0]["reason"]
    assert "nothing was sent" in body["detail"]
    assert await api_env.depth("coupang", Lane.LOW) == 0


async def test_a_batch_is_sent_in_chunks_and_answered_with_message_ids(
    api_env: ApiEnv, client: httpx.AsyncClient
) -> None:
    """100 good jobs across two markets: 202, one message id and one job id per job, in
    request order, each job `queued` in its status record."""
    naver = {"kind": "collect_order", "market": "naver", "seller": NAVER_SELLER,
             "payload": {"order_id": NAVER_ORDER}, "id": "naver-1"}  # fmt: skip
    jobs = [collect_job("coupang", i) for i in range(99)] + [naver]
    answer = await client.post("/v1/jobs", params={"lane": "medium"}, json=jobs)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["count"] == 100
    assert [job["index"] for job in body["jobs"]] == list(range(100))
    assert len({job["message_id"] for job in body["jobs"]}) == 100
    assert body["jobs"][99]["id"] == "naver-1"
    assert body["jobs"][99]["queue"].endswith("-naver-medium")
    assert await api_env.depth("coupang", Lane.MEDIUM) == 99
    assert await api_env.depth("naver", Lane.MEDIUM) == 1
    status = await client.get(f"/v1/jobs/{body['jobs'][0]['id']}")
    assert status.json()["state"] == "queued"
    assert status.json()["kind"] == "collect_order"


@pytest.mark.parametrize(
    ("job", "field", "reason"),
    [
        ("not an object", None, "JSON object"),
        ({**collect_job("coupang", 1), "kind": "fly"}, "kind", "not offered"),
        ({**collect_job("coupang", 1), "market": "acme"}, "market", "unknown market"),
        ({**collect_job("coupang", 1), "extra": 1}, "extra", "Extra inputs"),
        ({**collect_job("coupang", 1), "seller": ""}, "seller", "at least 1"),
        ({**collect_job("coupang", 1), "payload": {}}, "payload", "exactly one"),
    ],
)
async def test_each_refusal_names_the_field(
    client: httpx.AsyncClient, job: Any, field: str | None, reason: str
) -> None:
    """The checks are `lanes enqueue`'s; the answer names the field where it can."""
    answer = await client.post(
        "/v1/jobs", params={"lane": "high"}, json=[collect_job("coupang", 0), job]
    )
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert (error["index"], error["field"]) == (1, field)
    assert reason in error["reason"]


async def test_a_repeat_with_its_key_returns_the_first_answer_and_sends_nothing(
    api_env: ApiEnv, client: httpx.AsyncClient
) -> None:
    """Same Idempotency-Key, same request: the first answer again, marked replayed; two
    concurrent repeats with a new key send once; the key with another request is 409."""
    jobs = [collect_job("coupang", i) for i in range(100)]
    headers = {"Idempotency-Key": "batch-2025-07-01"}
    first = await client.post("/v1/jobs", params={"lane": "low"}, json=jobs, headers=headers)
    again = await client.post("/v1/jobs", params={"lane": "low"}, json=jobs, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await api_env.depth("coupang", Lane.LOW) == 100

    headers = {"Idempotency-Key": "batch-2"}
    both = await asyncio.gather(
        *(client.post("/v1/jobs", params={"lane": "low"}, json=jobs[:20], headers=headers)
          for _ in range(2))
    )  # fmt: skip
    assert both[0].json() == both[1].json()
    assert await api_env.depth("coupang", Lane.LOW) == 120

    other = await client.post("/v1/jobs", params={"lane": "low"}, json=jobs[:5], headers=headers)
    assert other.status_code == 409
    assert await api_env.depth("coupang", Lane.LOW) == 120


async def test_the_jobs_own_id_makes_a_repeat_harmless(
    api_env: ApiEnv, client: httpx.AsyncClient
) -> None:
    """No header: one job with an `id`, sent twice, is sent once."""
    job = collect_job("coupang", 7, id="order-600000007")
    first = await client.post("/v1/jobs", params={"lane": "high"}, json=job)
    again = await client.post("/v1/jobs", params={"lane": "high"}, json=job)
    assert again.json() == first.json()
    assert first.json()["jobs"][0]["id"] == "order-600000007"
    assert await api_env.depth("coupang", Lane.HIGH) == 1


async def test_without_key_or_ids_each_request_is_new(
    api_env: ApiEnv, client: httpx.AsyncClient, store: RedisStore
) -> None:
    """No header and a job without `id`: sent each time, and nothing kept for it."""
    for _ in range(2):
        answer = await client.post(
            "/v1/jobs", params={"lane": "high"}, json=collect_job("coupang", 8)
        )
        assert answer.status_code == 202
    assert await api_env.depth("coupang", Lane.HIGH) == 2
    assert [key async for key in store.client.scan_iter(match="lanes:idem:*")] == []


# --- per-order collection ---------------------------------------------------------------


async def _backfill(markets: Markets, job: JobRequest, done: list[int]) -> None:
    """Low-lane collection in a loop: it takes the low lane's 70 % of the budget."""
    while True:
        try:
            await markets.run(job, Lane.LOW)
            done.append(1)
        except MarketError:
            continue  # a 429 or an exhausted low job: the backfill goes on


@pytest.mark.parametrize(
    ("market", "seller", "order", "backfill_payload"),
    [
        ("coupang", COUPANG_VENDOR, str(COUPANG_ORDER), {"shipment_box_id": 600_000_001}),
        ("naver", NAVER_SELLER, NAVER_ORDER, {"order_id": "2025000000000001"}),
    ],
)
@pytest.mark.slow
async def test_collect_order_answers_within_its_wait_beside_a_low_backfill(
    api_env: ApiEnv,
    client: httpx.AsyncClient,
    make_markets: MakeMarkets,
    market: str,
    seller: str,
    order: str,
    backfill_payload: dict[str, Any],
) -> None:
    """A low backfill (another process) fills the budget up to 70 %; the high collection still
    finds room and answers 200 with the order, not 202."""
    backfill = await make_markets(api_env.config, settings=api_env.settings)
    job = JobRequest("collect_order", market, seller, backfill_payload)
    done: list[int] = []
    workers = [asyncio.create_task(_backfill(backfill, job, done)) for _ in range(4)]

    async def under_way() -> bool:
        return len(done) >= 2

    try:
        await wait_until(under_way)
        answer = await client.post(
            f"/v1/markets/{market}/sellers/{seller}/orders/{order}/collect",
            params={"wait": 10},
        )
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "done"
    assert body["lane"] == "high"
    if market == "coupang":
        assert body["result"]["order"][0]["orderId"] == COUPANG_ORDER
    else:
        assert body["result"]["orders"]
        assert all(item["productOrder"]["productOrderId"] for item in body["result"]["orders"])
    record = await client.get(f"/v1/jobs/{body['id']}")
    assert record.json()["state"] == "done"


async def test_collect_product(client: httpx.AsyncClient) -> None:
    """`get_product` by the catalogue's product id field (Coupang: sellerProductId)."""
    answer = await client.post(
        f"/v1/markets/coupang/sellers/{COUPANG_VENDOR}/products/1000002/collect",
        params={"lane": "medium"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["product"]["sellerProductId"] == 1_000_002
    assert answer.json()["lane"] == "medium"


async def test_collect_with_a_bad_id_is_422_and_an_unknown_market_404(
    client: httpx.AsyncClient,
) -> None:
    bad = await client.post(f"/v1/markets/coupang/sellers/{COUPANG_VENDOR}/orders/abc/collect")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "payload.order_id"
    unknown = await client.post("/v1/markets/acme/sellers/s/orders/1/collect")
    assert unknown.status_code == 404


async def test_a_market_refusal_is_502_and_the_job_failed(client: httpx.AsyncClient) -> None:
    """An order the market does not know: a permanent error, recorded as failed with the
    market's reason (nothing queued: a retry would fail the same way)."""
    answer = await client.post(
        f"/v1/markets/coupang/sellers/{COUPANG_VENDOR}/orders/999/collect",
        params={"field": "shipment_box_id"},
    )
    assert answer.status_code == 502, answer.text
    assert answer.json()["state"] == "failed"
    assert "not found" in answer.json()["reason"]
    record = await client.get(f"/v1/jobs/{answer.json()['id']}")
    assert record.json()["state"] == "failed"


async def test_missing_queues_are_503_naming_the_fix(
    api_env: ApiEnv, make_client: MakeClient
) -> None:
    unprovisioned = api_env.settings.model_copy(update={"queue_prefix": "nowhere"})
    client = await make_client(ApiEnv(unprovisioned, api_env.config, api_env.sqs))
    answer = await client.post("/v1/jobs", params={"lane": "low"}, json=collect_job("coupang", 1))
    assert answer.status_code == 503
    assert "lanes provision" in answer.json()["detail"]


@pytest.mark.slow
async def test_a_slow_market_past_wait_is_queued_and_holds_no_budget(
    api_env: ApiEnv, client: httpx.AsyncClient, coupang_sim: Running, store: RedisStore
) -> None:
    """The market answers after 3 s, the caller waits 0.5 s: the call is cancelled, the job
    queued (202), and no reservation of the cancelled call is left in the budget."""
    coupang_sim.state.faults.latency = 3.0
    answer = await client.post(
        f"/v1/markets/coupang/sellers/{COUPANG_VENDOR}/orders/{COUPANG_ORDER}/collect",
        params={"wait": 0.5},
    )
    assert answer.status_code == 202, answer.text
    assert "retry_after" not in answer.json()  # not refused by the budget: timed out
    assert await api_env.depth("coupang", Lane.HIGH) == 1
    markets = Markets(api_env.config, api_env.settings, Limiter(store.client), store.client)
    budget = markets.client("coupang").budget("order_by_order_id", COUPANG_VENDOR)
    usage = await Limiter(store.client).usage.read(budget)
    await markets.aclose()
    assert sum(usage.reserved.values()) == 0


async def _worker(settings: ApiSettings, config: Config) -> tuple[Runtime, Any]:
    """A real dispatcher in this event loop; its job tracker writes the status records."""
    runtime = await Runtime(settings, config).open()
    dispatcher = await build_dispatcher(runtime, markets=["coupang"])
    return runtime, dispatcher


@pytest.mark.slow
async def test_collect_past_its_wait_is_queued_then_done(
    api_env: ApiEnv, client: httpx.AsyncClient, store: RedisStore
) -> None:
    """High work has reserved the budget for the next seconds: the collection cannot start
    within `wait`, so it is queued (202 with the job id); a worker runs it later and
    `GET /v1/jobs/{id}` shows it done with the order."""
    markets = Markets(api_env.config, api_env.settings, Limiter(store.client), store.client)
    budget = markets.client("coupang").budget("order_by_order_id", COUPANG_VENDOR)
    limiter = Limiter(store.client, api_env.config.lanes)
    while (await limiter.acquire(budget, Lane.HIGH, max_wait=3.0)).granted:
        pass  # reserve every slot of the next 3 s
    answer = await client.post(
        f"/v1/markets/coupang/sellers/{COUPANG_VENDOR}/orders/{COUPANG_ORDER}/collect",
        params={"wait": 1},
    )
    assert answer.status_code == 202, answer.text
    queued = answer.json()
    assert queued["state"] == "queued"
    assert queued["message_id"]
    assert queued["retry_after"] > 1  # the budget said when there is room
    assert (await client.get(f"/v1/jobs/{queued['id']}")).json()["state"] == "queued"

    runtime, dispatcher = await _worker(api_env.settings, api_env.config)
    running = asyncio.create_task(dispatcher.run())
    try:

        async def done() -> bool:
            record = await client.get(f"/v1/jobs/{queued['id']}")
            return bool(record.json()["state"] == "done")

        await wait_until(done, within=40)
    finally:
        dispatcher.stop()
        await running
        await runtime.aclose()
        await markets.aclose()
    record = (await client.get(f"/v1/jobs/{queued['id']}")).json()
    assert record["result"]["order"][0]["orderId"] == COUPANG_ORDER
    assert record["lane"] == "high"


# --- status, health, job records -------------------------------------------------------


async def test_status_is_what_lanes_status_json_shows(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/status", params={"market": "coupang"})
    assert answer.status_code == 200
    body = answer.json()
    assert {(q["market"], q["lane"]) for q in body["queues"]} == {
        ("coupang", lane.value) for lane in Lane
    }
    assert body["budgets_error"] is None
    assert (await client.get("/v1/status", params={"market": "acme"})).status_code == 404


async def test_healthz_pings_redis(api_env: ApiEnv, make_client: MakeClient) -> None:
    """200 with Redis up; 503 with Redis unreachable; no key needed."""
    up = await make_client(api_env, key=None)
    assert (await up.get("/healthz")).status_code == 200
    down_settings = api_env.settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    down = await make_client(ApiEnv(down_settings, api_env.config, api_env.sqs), key=None)
    assert (await down.get("/healthz")).status_code == 503


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/jobs/no-such-job")).status_code == 404


# --- authentication ---------------------------------------------------------------------


@pytest.fixture
def _default_logging_after() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("_default_logging_after")
async def test_wrong_or_missing_key_is_401_and_no_key_reaches_a_log(
    api_env: ApiEnv, make_client: MakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """401 without a key and with a wrong one; the right key as X-API-Key or Bearer passes.
    Neither the key nor the wrong key appears in any log line or answer."""
    configure_logging("debug")
    wrong = "wrong-key-7a6b5c4d3e2f"
    anonymous = await make_client(api_env, key=None)
    answers = [
        await anonymous.get("/v1/status"),
        await anonymous.get("/v1/status", headers={"X-API-Key": wrong}),
        await anonymous.get("/v1/status", headers={"Authorization": f"Bearer {wrong}"}),
        await anonymous.post("/v1/jobs", params={"lane": "high"}, json=collect_job("coupang", 1)),
    ]
    assert [a.status_code for a in answers] == [401] * 4
    good = [
        await anonymous.get("/v1/status", headers={"X-API-Key": KEY}),
        await anonymous.get("/v1/status", headers={"Authorization": f"Bearer {KEY}"}),
    ]
    assert [a.status_code for a in good] == [200, 200]
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    assert sum(line["event"] == "api.unauthorized" for line in lines) == 4
    everything = out.out + out.err + "".join(a.text for a in answers + good)
    assert KEY not in everything
    assert wrong not in everything


def test_no_keys_means_no_app_unless_insecure_local(api_env: ApiEnv) -> None:
    keyless = api_env.settings.model_copy(update={"api_keys": ()})
    with pytest.raises(ConfigError, match="LANES_API_KEYS"):
        create_app(keyless, api_env.config)
    create_app(keyless, api_env.config, insecure_local=True)


def test_lanes_api_refuses_to_start_without_keys(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line on stderr, exit 2; --insecure-local only on a loopback host."""
    monkeypatch.delenv("LANES_API_KEYS", raising=False)
    refused = run_cli("api", "--port", str(free_port()))
    assert refused.code == 2
    assert refused.err.count("\n") == 1
    assert "LANES_API_KEYS" in refused.err
    public = run_cli("api", "--insecure-local", "--host", "0.0.0.0")
    assert public.code == 2
    assert "serves only this machine" in public.err


# --- Lambda -----------------------------------------------------------------------------


def test_the_same_app_answers_as_a_lambda_behind_api_gateway(
    lanes_env: LanesEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`scripts.api.app.handler` (Mangum) serves an API Gateway HTTP API event."""
    monkeypatch.setenv("LANES_API_KEYS", KEY)
    monkeypatch.setattr(api, "_lambda", None)
    monkeypatch.setattr(api, "configure_logging", lambda level: None)
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/v1/status",
        "rawQueryString": "market=coupang",
        "headers": {"x-api-key": KEY, "host": "lanes.example"},
        "requestContext": {
            "http": {"method": "GET", "path": "/v1/status", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "test"},
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }  # fmt: skip
    answer = api.handler(event, None)
    assert answer["statusCode"] == 200, answer
    assert {q["market"] for q in json.loads(answer["body"])["queues"]} == {"coupang"}
    context = {
        **event["requestContext"],
        "http": {**event["requestContext"]["http"], "path": "/healthz"},
    }
    health = api.handler({**event, "rawPath": "/healthz", "rawQueryString": "",
                          "headers": {"host": "lanes.example"}, "requestContext": context},
                         None)  # fmt: skip
    assert health["statusCode"] == 200
