"""Collection watermarks in Redis: per (market, seller, what), only ever forward."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lanes import RedisStore
from lanes.policy import Lane
from markets.coupang.simulator import coupang_app
from markets.watermark import Watermarks
from tests.fixtures_markets import COUPANG_KEYS, COUPANG_VENDOR, StartSimulator, markets_config
from tests.fixtures_worker import results
from worker.outcomes import Action
from worker.queues import Delivery, QueueName
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.sqs import SqsMessage


async def test_a_watermark_moves_forward_never_back(store: RedisStore) -> None:
    """Two overlapping runs may finish in any order: the later moment stays."""
    marks = Watermarks(store.client)
    assert await marks.get("naver", "s-1", "orders") is None
    later = datetime(2025, 7, 2, tzinfo=UTC)
    await marks.advance("naver", "s-1", "orders", later)
    await marks.advance("naver", "s-1", "orders", later - timedelta(hours=1))
    assert await marks.get("naver", "s-1", "orders") == later


async def test_watermarks_are_per_market_seller_and_collection(store: RedisStore) -> None:
    marks = Watermarks(store.client)
    moment = datetime(2025, 7, 2, tzinfo=UTC)
    await marks.advance("naver", "s-1", "orders", moment)
    assert await marks.get("naver", "s-2", "orders") is None
    assert await marks.get("naver", "s-1", "claims") is None
    assert await marks.get("coupang", "s-1", "orders") is None


# -- the watermark moves only once the result is delivered ---------------------------------


class _KilledWhileDelivering:
    """A sink the worker dies in: it is reached, then nothing after it ever runs."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    async def send(self, record: dict[str, Any]) -> None:
        self.reached.set()
        await asyncio.Event().wait()  # the worker is killed here

    async def aclose(self) -> None:
        return


def _scheduled(job_id: str) -> Delivery:
    """The scheduler's collection job (no window: since the seller's last collection)."""
    body = json.dumps({"kind": "collect_orders", "market": "coupang", "seller": COUPANG_VENDOR})
    message = SqsMessage(
        message_id=job_id,
        receipt_handle="unused",
        body=body,
        attributes={"ApproximateReceiveCount": "1"},
    )
    return Delivery(message=message, queue=QueueName("t", "coupang", Lane.MEDIUM), url="")


async def test_a_worker_killed_between_collection_and_delivery_loses_no_order(
    start_simulator: StartSimulator,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: Callable[[WorkerSettings, Any], Awaitable[Runtime]],
    store: RedisStore,
) -> None:
    """Issue 18: the first worker collects the seller's 50 orders of the last 10 days and is
    killed while handing the result to the sink; the next scheduled run, on another
    worker, delivers every one of the 50 orders once (counted at the sink). The old job
    moved the watermark before delivery: the next run read one day back and lost the rest."""
    sim = await start_simulator(
        coupang_app(orders=50, start=datetime.now(UTC) - timedelta(days=10), days=10)
    )
    config = markets_config(coupang=sim.url, extra={"coupang": {"groups": {"vendor": {"rps": 20}}}})
    settings = make_settings(credentials={"coupang": COUPANG_KEYS})
    first = await make_runtime(settings, config)
    killed = _KilledWhileDelivering()
    first.processor._sink = killed
    running = asyncio.create_task(first.processor.process(_scheduled("run-1"), deadline=None))
    await killed.reached.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    marks = Watermarks(store.client)
    assert await marks.get("coupang", COUPANG_VENDOR, "orders") is None

    second = await make_runtime(settings, config)
    outcome = await second.processor.process(_scheduled("run-2"), deadline=None)
    assert outcome.action is Action.DELETE
    (record,) = results(settings)
    boxes = [order["shipmentBoxId"] for order in record["data"]["orders"]]
    assert sorted(boxes) == [600_000_000 + index for index in range(50)]
    moved = await marks.get("coupang", COUPANG_VENDOR, "orders")
    assert moved is not None
    assert moved > datetime.now(UTC) - timedelta(minutes=1)
