"""`lanes enqueue`: every line checked before any is sent; backfills complete, once, in
bounded memory."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import markets
from lanes import Lane, load_settings
from scripts.backfill import id_jobs
from scripts.enqueue import EnqueueTarget, enqueue
from scripts.validate import JobValidator
from tests.fixtures_scripts import CliRun, LanesEnv
from worker.sqs import SqsClient

# moto takes O(queue length) per message sent or received: 10,000 take minutes on a small
# machine, so the suite uses 2,000 (set BACKFILL_TEST_SIZE=10000 for the full run).
BACKFILL_SIZE = int(os.environ.get("BACKFILL_TEST_SIZE", "2000"))

SHIP = {
    "kind": "ship_order",
    "market": "coupang",
    "seller": "A1",
    "payload": {
        "invoices": [
            {
                "shipment_box_id": 1,
                "order_id": 2,
                "vendor_item_id": 3,
                "delivery_company_code": "CJGLS",
                "invoice_number": "123",
            }
        ]
    },
}


def _line(**changes: object) -> str:
    return json.dumps({**SHIP, **changes})


async def _depth(env: LanesEnv, queue: str) -> int:
    async with SqsClient(endpoint_url=env.sqs_endpoint) as sqs:
        attributes = await sqs.attributes(await sqs.queue_url(queue))
    return int(attributes["ApproximateNumberOfMessages"])


async def _receive_all(sqs: SqsClient, url: str) -> Counter[str]:
    """Receive and delete until the queue answers empty twice: each job id and its count."""
    seen: Counter[str] = Counter()
    empty = 0
    while empty < 2:
        batch = await sqs.receive(url, max_messages=10, wait_seconds=0)
        empty = 0 if batch else empty + 1
        seen.update(json.loads(message.body)["id"] for message in batch)
        await sqs.delete_batch(url, [message.receipt_handle for message in batch])
    return seen


def test_a_bad_line_is_reported_by_number_and_nothing_is_sent(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], tmp_path: Path
) -> None:
    """Line 3 has an unknown kind: the error names line 3 and the queue stays empty."""
    assert run_cli("provision", "--market", "coupang").code == 0
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([_line(), _line(), _line(kind="teleport"), _line()]) + "\n")
    result = run_cli("enqueue", "--market", "coupang", "--lane", "high", "--file", str(jobs))
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert f"{jobs}:3:" in result.err
    assert "teleport" in result.err
    assert "nothing was sent" in result.err
    assert asyncio.run(_depth(lanes_env, lanes_env.queue("coupang", "high"))) == 0


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("not json", "not JSON"),
        (_line(market="naver"), "market is 'naver'"),
        (_line(payload={"invoices": []}), "invoices"),
        (_line(seller=""), "seller"),
    ],
)
def test_each_kind_of_bad_line_is_caught(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], tmp_path: Path, line: str, fragment: str
) -> None:
    """Malformed JSON, the wrong market, a bad payload, a missing seller: all on line 2."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(f"{_line()}\n{line}\n")
    result = run_cli(
        "enqueue", "--market", "coupang", "--lane", "high", "--file", str(jobs), "--dry-run"
    )
    assert result.code == 2
    assert f"{jobs}:2:" in result.err
    assert fragment in result.err


def test_standard_input_is_sent(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--file -` reads standard input; blank lines are skipped; any seller name is sent
    (one SQS refuses as a MessageGroupId is hashed)."""
    assert run_cli("provision", "--market", "coupang").code == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{_line()}\n\n{_line(seller='판매자 1')}\n"))
    result = run_cli("enqueue", "--market", "coupang", "--lane", "high", "--file", "-")
    assert result.code == 0, result.err
    assert "sent 2 message(s)" in result.out
    assert asyncio.run(_depth(lanes_env, lanes_env.queue("coupang", "high"))) == 2


def test_dry_run_prints_and_sends_nothing(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """A dry-run backfill prints one job per day and sends nothing."""
    assert run_cli("provision", "--market", "coupang").code == 0
    result = run_cli(
        "enqueue", "--market", "coupang", "--lane", "low", "--kind", "collect_orders",
        "--seller", "A1", "--since", "2025-01-01", "--until", "2025-06-30", "--dry-run",
    )  # fmt: skip
    assert result.code == 0, result.err
    jobs = [json.loads(line) for line in result.out.splitlines()]
    assert len(jobs) == 181
    assert jobs[0]["payload"] == {"since": "2025-01-01", "until": "2025-01-01"}
    assert jobs[-1]["payload"] == {"since": "2025-06-30", "until": "2025-06-30"}
    assert len({job["id"] for job in jobs}) == 181
    assert asyncio.run(_depth(lanes_env, lanes_env.queue("coupang", "low"))) == 0


def test_a_repeated_backfill_has_the_same_ids(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """The producer id depends only on what the job asks: the worker can skip a repeat."""
    args = ("enqueue", "--market", "naver", "--lane", "low", "--kind", "collect_orders",
            "--seller", "S1", "--since", "2025-03-01", "--until", "2025-03-02", "--step", "6h",
            "--dry-run")  # fmt: skip
    first, second = run_cli(*args), run_cli(*args)
    assert first.out == second.out
    assert len(first.out.splitlines()) == 8


@pytest.mark.timeout(max(60, BACKFILL_SIZE // 20))
async def test_a_large_backfill_arrives_complete_once_in_bounded_memory(
    lanes_env: LanesEnv, tmp_path: Path
) -> None:
    """A backfill of thousands of ids: every job arrives exactly once; peak memory stays small."""
    settings = load_settings()
    config = markets.load_config(settings.config)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"2025{number:08d}\n" for number in range(BACKFILL_SIZE)))
    naver = config.market("naver")
    async with SqsClient(endpoint_url=lanes_env.sqs_endpoint) as sqs:
        url = await sqs.create_queue(lanes_env.queue("naver", "low"), {})
        target = EnqueueTarget(lanes_env.prefix, "naver", Lane.LOW)
        tracemalloc.start()
        try:
            sent = await enqueue(
                lambda: id_jobs("naver", naver, "S1", ids),
                target,
                JobValidator(config, "naver"),
                sqs,
                out=io.StringIO(),
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        depth = int((await sqs.attributes(url))["ApproximateNumberOfMessages"])
        seen = await _receive_all(sqs, url)
    assert sent == depth == BACKFILL_SIZE
    assert len(seen) == BACKFILL_SIZE
    assert set(seen.values()) == {1}
    # Flat in the number of jobs: about 1 MB whether 2,000 or 100,000 are sent.
    assert peak < 8 * 1024 * 1024, peak
    print(f"peak traced memory {peak / 1e6:.1f} MB for {sent} jobs")
