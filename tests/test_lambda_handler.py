"""worker.lambda_handler: partial batch failures and the invocation's remaining time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lanes.policy import Lane
from lanes.settings import Settings
from tests.fixtures_worker import AcmeMarket, Lanes, acme_config, acme_toml, job, results
from worker import lambda_handler
from worker.lambda_handler import handle_batch
from worker.queues import ATTR_REASON
from worker.runtime import Runtime
from worker.sqs import SqsClient, SqsMessage

MakeRuntime = Callable[[Settings, object], Awaitable[Runtime]]


@dataclass
class FakeContext:
    """Lambda's context object: only the remaining time matters to the handler."""

    seconds: float
    aws_request_id: str = "req-1"

    def __post_init__(self) -> None:
        self._ends = time.monotonic() + self.seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def _record(message: SqsMessage, arn: str) -> dict[str, Any]:
    return {
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": message.attributes,
        "messageAttributes": {
            name: {"stringValue": value, "dataType": "String"}
            for name, value in message.message_attributes.items()
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


async def _event(lanes: Lanes, lane: Lane, bodies: list[str]) -> tuple[dict[str, Any], list[str]]:
    """An SQS event as Lambda builds it, from really received messages (ids in send order)."""
    await lanes.send(lane, bodies)
    arn = await lanes.sqs.queue_arn(lanes.name(lane))
    got: dict[str, SqsMessage] = {}
    while len(got) < len(bodies):
        for message in await lanes.sqs.receive(lanes.url(lane), max_messages=10, wait_seconds=1):
            got[message.body] = message
    ordered = [got[body] for body in bodies]
    return {"Records": [_record(m, arn) for m in ordered]}, [m.message_id for m in ordered]


@pytest.mark.slow
async def test_returns_exactly_the_failed_records(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., Settings],
    make_runtime: MakeRuntime,
) -> None:
    """Done and dead-lettered records succeed; a record that must come back is the only failure."""
    runtime = await make_runtime(make_settings(), acme_config(acme))
    bodies = [job(key="a"), job(key="b"), job(status="400"), "not json", job(status="503")]
    event, ids = await _event(lanes, Lane.HIGH, bodies)
    answer = await handle_batch(runtime, event, FakeContext(8.0).get_remaining_time_in_millis)
    assert answer == {"batchItemFailures": [{"itemIdentifier": ids[4]}]}
    assert len(results(runtime.settings)) == 2
    reasons = sorted(
        m.message_attributes[ATTR_REASON] for m in await lanes.take_all(Lane.HIGH, dead=True)
    )
    assert reasons[0].startswith("permanent error")
    assert reasons[1].startswith("poison message")


@pytest.mark.slow
@pytest.mark.faults  # a 3 s function, timed on the host's clock: run alone
async def test_unfinished_records_fail_before_time_runs_out(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., Settings],
    make_runtime: MakeRuntime,
) -> None:
    """A record still running near the end is returned as a failure before the time is up."""
    runtime = await make_runtime(make_settings(), acme_config(acme))
    event, ids = await _event(lanes, Lane.MEDIUM, [job(key="quick"), job(key="slow", sleep=8)])
    context = FakeContext(3.0)
    answer = await handle_batch(runtime, event, context.get_remaining_time_in_millis)
    assert answer == {"batchItemFailures": [{"itemIdentifier": ids[1]}]}
    assert context.get_remaining_time_in_millis() > 0
    # Released for a redelivery in seconds, not left invisible for the visibility timeout.
    (back,) = await lanes.sqs.receive(lanes.url(Lane.MEDIUM), max_messages=10, wait_seconds=5)
    assert back.message_id == ids[1]


def test_handler_entry_point_reads_settings_from_the_environment(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`handler(event, context)` builds its worker from LANES_* once and answers a batch; its
    log lines carry Powertools' keys (function_request_id, cold_start, xray_trace_id)."""
    settings = make_settings(config=acme_toml(acme, tmp_path / "lanes.toml"))
    # structlog caches loggers on first use: set up for pytest's captured stdout of this test,
    # they would write to a closed file in later tests.
    monkeypatch.setattr(lambda_handler, "configure_logging", lambda level: None)
    for name in ("config", "redis_url", "sqs_endpoint_url", "queue_prefix", "results_url"):
        monkeypatch.setenv(f"LANES_{name.upper()}", str(getattr(settings, name)))

    async def build() -> tuple[dict[str, Any], list[str]]:
        # This test is sync: its own loop needs its own SQS client.
        async with SqsClient(endpoint_url=settings.sqs_endpoint_url) as sqs:
            here = Lanes(sqs=sqs, prefix=lanes.prefix, urls=lanes.urls)
            return await _event(here, Lane.LOW, [job(key="x"), job(status="404")])

    loop = asyncio.new_event_loop()
    try:
        event, _ids = loop.run_until_complete(build())
    finally:
        loop.close()
    try:
        assert lambda_handler.handler(event, FakeContext(10.0)) == {"batchItemFailures": []}
        assert lambda_handler.handler({"Records": []}, FakeContext(10.0)) == {
            "batchItemFailures": []
        }
    finally:
        lambda_handler.close()
    assert [record["data"]["echo"] for record in results(settings)] == [{"key": "x"}]
    batches = [line for line in capsys.readouterr().out.splitlines() if "lambda.batch_done" in line]
    assert len(batches) == 2
    assert "function_request_id" in batches[0]
    assert "req-1" in batches[0]
    assert "cold_start=True" in batches[0] or '"cold_start": true' in batches[0]
    assert "cold_start=False" in batches[1] or '"cold_start": false' in batches[1]


@pytest.mark.slow
@pytest.mark.faults  # a 2.5 s function, timed on the host's clock: run alone
async def test_a_job_that_overruns_is_cancelled_and_released(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., Settings],
    make_runtime: MakeRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job that ignores its deadline is cancelled at the hard deadline, reported as failed
    and put straight back in its queue (visibility 0)."""
    runtime = await make_runtime(make_settings(), acme_config(acme))

    async def stuck(delivery: object, *, deadline: float | None) -> object:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    monkeypatch.setattr(runtime.processor, "process", stuck)
    event, ids = await _event(lanes, Lane.HIGH, [job(key="stuck")])
    context = FakeContext(2.5)
    answer = await handle_batch(runtime, event, context.get_remaining_time_in_millis)
    assert answer == {"batchItemFailures": [{"itemIdentifier": ids[0]}]}
    assert context.get_remaining_time_in_millis() > 0
    (back,) = await lanes.take_all(Lane.HIGH)
    assert back.message_id == ids[0]


async def test_a_hyphenated_prefix_is_parsed_and_metrics_are_printed_as_emf(
    acme: AcmeMarket,
    sqs: SqsClient,
    make_settings: Callable[..., Settings],
    make_runtime: MakeRuntime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 12 (4): under prefix `shop-prod-...` the record's queue is read as market acme
    (it was read as market `prod-...` and every record dead-lettered as poison). Issue 11:
    the batch's counts are printed as one CloudWatch EMF line per market and lane."""
    prefix = f"shop-prod-{time.monotonic_ns() % 10**8}"
    hyphenated = Lanes(sqs=sqs, prefix=prefix)
    for dead in (False, True):
        name = hyphenated.name(Lane.HIGH, dead=dead)
        hyphenated.urls[name] = await sqs.create_queue(name, {"VisibilityTimeout": "10"})
    runtime = await make_runtime(make_settings(queue_prefix=prefix), acme_config(acme))
    event, _ids = await _event(hyphenated, Lane.HIGH, [job(key="a"), job(key="b")])
    capsys.readouterr()
    answer = await handle_batch(runtime, event, FakeContext(30.0).get_remaining_time_in_millis)
    assert answer == {"batchItemFailures": []}
    assert len(results(runtime.settings)) == 2
    assert await hyphenated.take_all(Lane.HIGH, dead=True) == []
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (line,) = emf
    assert (line["market"], line["lane"], line["Jobs_done"]) == ("acme", "high", 2)
    assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["market", "lane"]]
