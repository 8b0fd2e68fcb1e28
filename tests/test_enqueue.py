"""`lanes enqueue`: every line checked before any is sent; backfills complete, once, in
bounded memory."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import markets
from lanes import Lane, load_settings
from scripts.tools.backfill import id_jobs
from scripts.tools.enqueue import EnqueueTarget, enqueue
from scripts.tools.validate import JobValidator
from tests.fixtures_scripts import CliRun, LanesEnv
from worker.settings import WorkerSettings
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
        "--seller", "A1", "--since", "2025-01-01", "--until", "2025-06-30", "--step", "1d",
        "--dry-run",
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
@pytest.mark.slow
async def test_a_large_backfill_arrives_complete_once_in_bounded_memory(
    lanes_env: LanesEnv, tmp_path: Path
) -> None:
    """A backfill of thousands of ids: every job arrives exactly once; peak memory stays small."""
    settings = load_settings(WorkerSettings)
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


def _bad_lines() -> dict[str, str]:
    """Input lines the worker could never run, each with the words its error names."""
    big = "9" * 5000
    deep = '{"a":' * 2000 + "1" + "}" * 2000
    return {
        "oversized": _line(
            kind="call", payload={"endpoint": "orders", "params": {"x": "y" * (1100 * 1024)}}
        ),
        "NaN": _line().replace('"A1"', '"A1", "id": NaN'),
        "Infinity": _line().replace('"A1"', '"A1", "id": Infinity'),
        "big int": _line().replace('"A1"', '"A1", "id": ' + big),
        "deep": _line().replace('"payload": {', f'"extra": {deep}, "payload": {{'),
        "bad JSON": '{"kind": "ship_order",',
        "unknown kind": _line(kind="teleport"),
        "unknown market": _line(market="elsewhere"),
        "brace seller": _line(seller="A{1}"),
    }


def test_every_bad_line_is_named_and_nothing_is_sent(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], tmp_path: Path
) -> None:
    """Oversized, NaN, Infinity, a 5,000-digit number, deep nesting, bad JSON, an unknown
    kind or market, a seller with a brace on Coupang's per-seller budget: one error line per
    bad line with its number, exit 2, the queue stays empty, no traceback."""
    assert run_cli("provision", "-m", "coupang").code == 0
    bad = _bad_lines()
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([_line(), *bad.values(), _line()]) + "\n")
    result = run_cli("enqueue", "-m", "coupang", "-l", "high", "-f", str(jobs))
    assert result.code == 2
    lines = result.err.splitlines()
    assert len(lines) == len(bad), result.err
    for number, line in enumerate(lines, start=2):
        assert line.startswith(f"lanes: error: {jobs}:{number}: "), line
    assert "over SQS's limit" in lines[0]
    assert "NaN" in lines[1]
    assert "Infinity" in lines[2]
    assert "4300 digits" in lines[3]
    assert "'{'" in lines[-1]
    assert lines[-1].endswith(f"({len(bad)} bad of {len(bad) + 2}, nothing was sent)")
    assert "Traceback" not in result.err
    assert asyncio.run(_depth(lanes_env, lanes_env.queue("coupang", "high"))) == 0


def _shell(
    env: LanesEnv, command: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`command` in bash (for `<(...)`), with `lanes` as this interpreter's CLI."""
    lanes = f"{sys.executable} -m scripts.cli"
    return subprocess.run(
        ["bash", "-c", command.replace("lanes ", f"{lanes} ", 1)],
        env=env.subprocess_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_pipes_and_fifos_are_read_like_files(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], tmp_path: Path
) -> None:
    """`--file <(cat jobs.jsonl)`, `--ids-file <(seq 3)` and `--ids-file -` send every job
    (a pipe cannot be read twice: it is spooled), and the count is printed."""
    assert run_cli("provision", "-m", "coupang").code == 0
    assert run_cli("provision", "-m", "naver").code == 0
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(f"{_line()}\n{_line(seller='A2')}\n")
    piped = _shell(lanes_env, f"lanes enqueue -m coupang -l high -f <(cat {jobs})")
    assert piped.returncode == 0, piped.stderr
    assert "sent 2 message(s)" in piped.stdout
    ids = _shell(lanes_env, "lanes backfill -m naver -s S1 --ids-file <(seq 3)")
    assert ids.returncode == 0, ids.stderr
    assert "sent 3 message(s)" in ids.stdout
    dash = _shell(lanes_env, "lanes backfill -m naver -s S1 --ids-file - --dry-run", "7\n8\n")
    assert dash.returncode == 0, dash.stderr
    assert [json.loads(line)["payload"] for line in dash.stdout.splitlines()] == [
        {"order_id": "7"},
        {"order_id": "8"},
    ]
    assert asyncio.run(_depth(lanes_env, lanes_env.queue("coupang", "high"))) == 2
    assert asyncio.run(_depth(lanes_env, lanes_env.queue("naver", "low"))) == 3


def test_a_fifo_is_spooled(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], tmp_path: Path
) -> None:
    """A named pipe given to `--file` is read once into a spool, then validated and printed."""
    fifo = tmp_path / "jobs.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("w") as writer:
            writer.write(f"{_line()}\n{_line(seller='A2')}\n")

    writer = threading.Thread(target=feed)
    writer.start()
    result = run_cli("enqueue", "-m", "coupang", "-l", "high", "-f", str(fifo), "-n")
    writer.join(10)
    assert result.code == 0, result.err
    assert [json.loads(line)["seller"] for line in result.out.splitlines()] == ["A1", "A2"]
    assert "would send 2 message(s)" in result.err


def test_validating_does_no_io(lanes_env: LanesEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A validator is built from the config alone: no Redis store, limiter or `Markets`."""
    import markets.service
    import scripts.tools.validate

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("validation built a connection owner")

    monkeypatch.setattr(markets.service.Markets, "__init__", forbidden)
    monkeypatch.setattr("lanes.store.RedisStore.__init__", forbidden)
    config = markets.load_config(lanes_env.config)
    validator = scripts.tools.validate.JobValidator(config, "coupang")
    assert validator.check_body(_line()).request.seller == "A1"
