"""scripts.local.lambda_emulator: the Lambda path end to end, handler in spawned workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from lanes.policy import Lane
from scripts.local.lambda_emulator import (
    EventSource,
    InvocationContext,
    LambdaEmulator,
    _failed_ids,
    sqs_event,
)
from scripts.local.services import MotoServer, RedisServer
from tests.fixtures_markets import acme_toml
from tests.fixtures_worker import AcmeMarket, Lanes, job, wait_until
from worker.sqs import SqsMessage


def _message(number: int) -> SqsMessage:
    return SqsMessage(
        message_id=f"m-{number}",
        receipt_handle=f"r-{number}",
        body=json.dumps({"n": number}),
        attributes={"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
        message_attributes={"lanes.reason": "x"},
    )


def raising_handler(event: Mapping[str, Any], context: InvocationContext) -> dict[str, Any]:
    """A handler that fails every invocation (the whole batch must come back)."""
    raise RuntimeError("boom")


def test_event_has_the_record_fields_lambda_sends() -> None:
    """Records carry messageId, receiptHandle, body, attributes, string message attributes,
    eventSource and the queue ARN with its region."""
    arn = "arn:aws:sqs:ap-northeast-2:000000000000:demo-coupang-high"
    record = sqs_event([_message(1)], arn)["Records"][0]
    assert record["messageId"] == "m-1"
    assert record["receiptHandle"] == "r-1"
    assert json.loads(record["body"]) == {"n": 1}
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["lanes.reason"]["stringValue"] == "x"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == "ap-northeast-2"


def test_a_partial_batch_answer_names_known_records_only() -> None:
    """Named failures are kept; an unknown id or a malformed answer fails the whole batch."""
    batch = [_message(1), _message(2)]
    assert _failed_ids({"batchItemFailures": [{"itemIdentifier": "m-2"}]}, batch) == {"m-2"}
    assert _failed_ids({"batchItemFailures": []}, batch) == set()
    assert _failed_ids(None, batch) == set()
    assert _failed_ids({"batchItemFailures": [{"itemIdentifier": "other"}]}, batch) is None
    assert _failed_ids({"batchItemFailures": "nope"}, batch) is None
    assert _failed_ids("ok", batch) is None


def test_the_context_counts_down() -> None:
    """`get_remaining_time_in_millis` starts at the timeout and never goes below zero."""
    context = InvocationContext("fn", "req-1", 2000)
    assert 1500 < context.get_remaining_time_in_millis() <= 2000
    assert InvocationContext("fn", "req-2", 0).get_remaining_time_in_millis() == 0


@pytest.fixture
def environment(
    tmp_path: Path,
    acme: AcmeMarket,
    lanes: Lanes,
    redis_server: RedisServer,
    moto_server: MotoServer,
) -> dict[str, str]:
    """The function's `LANES_*` settings: market acme, the test Redis and moto, results in
    one file per worker process under tmp_path."""
    config = acme_toml(acme, tmp_path / "lanes.toml")
    return {
        "LANES_CONFIG": str(config),
        "LANES_REDIS_URL": redis_server.url,
        "LANES_SQS_ENDPOINT_URL": moto_server.url,
        "LANES_QUEUE_PREFIX": lanes.prefix,
        "LANES_RESULTS_URL": f"file:{tmp_path}/results-{{pid}}.jsonl",
        "LANES_LOG_LEVEL": "error",
        "LANES_CONCURRENCY": "10",
    }


def _done_ids(tmp_path: Path) -> set[str]:
    return {
        json.loads(line)["id"]
        for path in tmp_path.glob("results-*.jsonl")
        for line in path.read_text().splitlines()
        if line
    }


@pytest.mark.slow
async def test_batches_run_through_the_handler_and_are_deleted(
    tmp_path: Path, acme: AcmeMarket, lanes: Lanes, environment: dict[str, str]
) -> None:
    """Messages in two lanes reach the market through the handler in worker processes,
    in batches of at most the batch size; every one is done and deleted."""
    await lanes.send(Lane.HIGH, [job("ship", id=f"h-{n}") for n in range(12)])
    await lanes.send(Lane.LOW, [job(id=f"l-{n}") for n in range(5)])
    sources = [
        EventSource(lanes.name(Lane.HIGH), batch_size=5, max_concurrency=2),
        EventSource(lanes.name(Lane.LOW), batch_size=10, batching_window=0.5, max_concurrency=1),
    ]
    async with LambdaEmulator(lanes.sqs, sources, environment=environment) as emulator:
        running = asyncio.create_task(emulator.run())
        await wait_until(lambda: _async(len(_done_ids(tmp_path)) == 17), within=60)
        emulator.stop()
        await running
    assert _done_ids(tmp_path) == {f"h-{n}" for n in range(12)} | {f"l-{n}" for n in range(5)}
    for lane in (Lane.HIGH, Lane.LOW):
        assert await lanes.depth(lane) == (0, 0)
    assert emulator.stats.records[lanes.name(Lane.HIGH)] == 12
    assert emulator.stats.invocations[lanes.name(Lane.HIGH)] >= 3  # batches of at most 5
    assert emulator.stats.failures[lanes.name(Lane.HIGH)] == 0
    assert emulator.stats.peak[lanes.name(Lane.HIGH)] <= 2
    assert emulator.stats.peak[lanes.name(Lane.LOW)] <= 1
    assert len(acme.calls("/ship")) == 12
    assert emulator.stats.processes == 3  # all started before the first poll, none mid-run


@pytest.mark.slow
async def test_reported_failures_come_back_and_successes_do_not(
    tmp_path: Path, lanes: Lanes, environment: dict[str, str]
) -> None:
    """A record the handler reports in batchItemFailures (a market down past the invocation's
    time) stays in its queue and is delivered again; its batch mates are deleted."""
    await lanes.send(Lane.MEDIUM, [job(id="good-1"), job(status=503, id="down"), job(id="good-2")])
    source = EventSource(lanes.name(Lane.MEDIUM), batch_size=10, max_concurrency=1)
    async with LambdaEmulator(
        lanes.sqs, [source], environment=environment, timeout_seconds=3
    ) as emulator:
        running = asyncio.create_task(emulator.run())
        await wait_until(lambda: _async(emulator.stats.records[source.queue] >= 4), within=60)
        emulator.stop()
        await running
    assert _done_ids(tmp_path) == {"good-1", "good-2"}
    assert emulator.stats.failures[source.queue] >= 2  # "down", at least twice
    visible, in_flight = await lanes.depth(Lane.MEDIUM)
    assert visible + in_flight == 1


@pytest.mark.slow
async def test_a_raising_handler_fails_the_whole_batch(lanes: Lanes) -> None:
    """A handler that raises deletes nothing: every record of the batch comes back."""
    await lanes.send(Lane.LOW, [job(id=f"r-{n}") for n in range(3)])
    source = EventSource(lanes.name(Lane.LOW), batch_size=10, max_concurrency=1)
    async with LambdaEmulator(
        lanes.sqs,
        [source],
        environment={},
        handler="tests.test_emulator.raising_handler",
    ) as emulator:
        running = asyncio.create_task(emulator.run())
        await wait_until(lambda: _async(emulator.stats.errors[source.queue] >= 1), within=60)
        emulator.stop()
        await running
    assert emulator.stats.failures[source.queue] == emulator.stats.records[source.queue]
    visible, in_flight = await lanes.depth(Lane.LOW)
    assert visible + in_flight == 3


async def _async(value: bool) -> bool:
    return value
