"""`lanes provision`: queues with redrive and retention; running it again changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from scripts.tools.provision import DEAD_LETTER_RETENTION, LANE_RETENTION, REDRIVE_UNTIL_SUCCESS
from tests.fixtures_scripts import CliRun, LanesEnv
from worker.sqs import SqsClient


async def _attributes(env: LanesEnv, queue: str) -> dict[str, str]:
    async with SqsClient(endpoint_url=env.sqs_endpoint) as sqs:
        return await sqs.attributes(await sqs.queue_url(queue))


@pytest.mark.slow
def test_provision_twice_is_a_no_op(lanes_env: LanesEnv, run_cli: Callable[..., CliRun]) -> None:
    """The first run creates 12 queues; the second reports every one unchanged."""
    first = run_cli("provision")
    assert first.code == 0, first.err
    assert first.out.count(" created") == 12
    before = asyncio.run(_attributes(lanes_env, lanes_env.queue("coupang", "low")))
    second = run_cli("provision")
    assert second.code == 0
    assert second.out.count("ok (unchanged)") == 12
    assert "created" not in second.out
    after = asyncio.run(_attributes(lanes_env, lanes_env.queue("coupang", "low")))
    assert after["LastModifiedTimestamp"] == before["LastModifiedTimestamp"]


def test_queues_get_redrive_and_retention(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """Every lane redrives only after 1000 receives (the worker dead-letters with a reason
    first; waits must never be redriven); DLQs keep 14 days."""
    assert run_cli("provision", "--market", "naver").code == 0
    low = asyncio.run(_attributes(lanes_env, lanes_env.queue("naver", "low")))
    high = asyncio.run(_attributes(lanes_env, lanes_env.queue("naver", "high")))
    dead = asyncio.run(_attributes(lanes_env, lanes_env.queue("naver", "low", dead_letter=True)))
    low_redrive = json.loads(low["RedrivePolicy"])
    assert int(low_redrive["maxReceiveCount"]) == REDRIVE_UNTIL_SUCCESS == 1000
    assert low_redrive["deadLetterTargetArn"] == dead["QueueArn"]
    assert int(json.loads(high["RedrivePolicy"])["maxReceiveCount"]) == 1000
    assert int(low["VisibilityTimeout"]) == 120
    assert int(low["MessageRetentionPeriod"]) == LANE_RETENTION
    assert int(dead["MessageRetentionPeriod"]) == DEAD_LETTER_RETENTION > LANE_RETENTION


@pytest.mark.slow
def test_a_difference_is_reported_and_updated_only_when_asked(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed visibility timeout is reported as differing; `--update` applies it."""
    assert run_cli("provision", "--market", "naver").code == 0
    monkeypatch.setenv("LANES_VISIBILITY_TIMEOUT", "300")
    report = run_cli("provision", "--market", "naver")
    assert report.out.count("differs: VisibilityTimeout is 120, settings want 300") == 3
    queue = lanes_env.queue("naver", "medium")
    assert asyncio.run(_attributes(lanes_env, queue))["VisibilityTimeout"] == "120"
    updated = run_cli("provision", "--market", "naver", "--update")
    assert updated.out.count("updated: VisibilityTimeout") == 3
    assert asyncio.run(_attributes(lanes_env, queue))["VisibilityTimeout"] == "300"
    assert run_cli("provision", "--market", "naver").out.count("ok (unchanged)") == 6
