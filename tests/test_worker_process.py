"""The worker as its own process (`python -m worker`): SIGTERM and SIGKILL lose nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lanes.policy import Lane
from scripts.local.services import free_port
from tests.fixtures_markets import acme_config, acme_toml
from tests.fixtures_worker import AcmeMarket, Lanes, RunningWorker, job, results, wait_until
from worker.fairness import RECALL_GUARD
from worker.queues import ATTR_REASON
from worker.settings import WorkerSettings

StartWorker = Callable[..., Awaitable[RunningWorker]]
Spawn = Callable[[WorkerSettings], subprocess.Popen[bytes]]


@pytest.fixture
def spawn_worker(store: Any, tmp_path: Path) -> Iterator[Spawn]:
    """Factory: start `python -m worker` with `settings` as LANES_* variables."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(settings: WorkerSettings) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        for name, value in settings.model_dump(exclude={"credentials"}).items():
            if value is not None:
                env[f"LANES_{name.upper()}"] = str(value)
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.faults  # a measured exit time: run alone
async def test_sigterm_releases_everything_within_the_grace_period(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    spawn_worker: Spawn,
    tmp_path: Path,
) -> None:
    """SIGTERM mid-run: the process exits within the grace period (plus the release calls),
    and every message is done or visible in its queue again, buffered and set-aside ones
    too, none left in flight."""
    grace = 1.0
    settings = make_settings(
        config=acme_toml(acme, tmp_path / "lanes.toml"), grace_seconds=grace, concurrency=4
    )
    await lanes.send(Lane.MEDIUM, [job(id=f"m{n}", key=f"m{n}", sleep=4) for n in range(12)])
    await lanes.send(Lane.HIGH, [job(id=f"h{n}", key=f"h{n}") for n in range(3)])
    process = spawn_worker(settings)

    async def busy() -> bool:
        return len(acme.calls()) >= 5

    await wait_until(busy)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, 30)
    took = time.monotonic() - signalled
    assert code == 0
    assert took < grace + 3.0

    async def none_in_flight() -> bool:
        return (await lanes.depth(Lane.MEDIUM))[1] == 0

    # a set-aside message about to return is left to return on its own
    await wait_until(none_in_flight, within=RECALL_GUARD + 1.0)
    visible, _ = await lanes.depth(Lane.MEDIUM)
    done = {record["id"] for record in results(settings)}
    assert {f"h{n}" for n in range(3)} <= done
    medium_done = len(done) - 3
    assert visible + medium_done == 12
    assert len(await lanes.take_all(Lane.MEDIUM)) + medium_done == 12
    # Logs are JSON lines; each job's lines carry its whole context.
    lines = [json.loads(line) for line in (tmp_path / "worker-0.log").read_text().splitlines()]
    finished = [line for line in lines if line["event"] == "job.finished"]
    assert len(finished) >= 3
    for line in finished:
        assert {"market", "lane", "kind", "seller", "message_id", "receive", "outcome"} <= set(line)
    assert lines[-1]["event"] == "worker.stopped"


@pytest.mark.slow
async def test_sigkill_loses_nothing(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    spawn_worker: Spawn,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    """A worker killed with SIGKILL mid-job: its messages come back after the visibility
    timeout and a second worker finishes every one of them."""
    settings = make_settings(config=acme_toml(acme, tmp_path / "lanes.toml"), concurrency=4)
    keys = [f"k{n}" for n in range(8)]
    await lanes.send(Lane.HIGH, [job(id=key, key=key, sleep=2) for key in keys])
    process = spawn_worker(settings)

    async def busy() -> bool:
        return len(acme.calls()) >= 2

    await wait_until(busy)
    process.kill()
    await asyncio.to_thread(process.wait, 10)
    worker = await start_worker(settings, acme_config(acme))

    async def all_done() -> bool:
        return {record["id"] for record in results(settings)} == set(keys)

    await wait_until(all_done, within=40)
    await worker.stop()
    assert await lanes.take_all(Lane.HIGH, dead=True) == []


@pytest.mark.slow
def test_missing_queues_fail_with_one_line(
    acme: AcmeMarket, make_settings: Callable[..., WorkerSettings], tmp_path: Path
) -> None:
    """Queues that were never provisioned: exit 2 with one line naming the queue, no traceback."""
    settings = make_settings(config=acme_toml(acme, tmp_path / "lanes.toml"), queue_prefix="nope")
    env = dict(os.environ)
    for name in ("config", "redis_url", "sqs_endpoint_url", "queue_prefix"):
        env[f"LANES_{name.upper()}"] = str(getattr(settings, name))
    done = subprocess.run(
        [sys.executable, "-m", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "lanes: error: SQS queue 'nope-acme-high' does not exist (run `lanes provision`)"
    ]


@pytest.mark.slow
async def test_metrics_of_a_running_worker_show_the_per_lane_series(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    spawn_worker: Spawn,
    tmp_path: Path,
) -> None:
    """Issue 11: `curl /metrics` on a running worker shows the series per market and lane
    (done, dead-lettered, enqueue-to-start, budget wait, queue depth), and `/healthz` is ok."""
    port = free_port()
    settings = make_settings(
        config=acme_toml(acme, tmp_path / "lanes.toml"),
        metrics_port=port,
        metrics_host="127.0.0.1",
    )
    await lanes.send(Lane.HIGH, [job(key="a"), job(key="b")])
    await lanes.send(Lane.LOW, [job(key="c", status="400")])
    process = spawn_worker(settings)
    base = f"http://127.0.0.1:{port}"

    async def scraped() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as got:
                text = await got.text()
        except aiohttp.ClientError:
            return False
        # Every message settled (the high ones may finish after the low one).
        return all(
            series in text
            for series in (
                'lanes_jobs_total{lane="low",market="acme",outcome="dead_lettered"} 1.0',
                'lanes_jobs_total{lane="high",market="acme",outcome="done"} 2.0',
            )
        )

    await wait_until(scraped)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics") as got:
            text = await got.text()
        async with session.get(f"{base}/healthz") as health:
            assert health.status == 200
            assert (await health.json())["status"] == "ok"
    assert 'lanes_jobs_total{lane="high",market="acme",outcome="done"} 2.0' in text
    assert 'lanes_job_failures_total{error="permanent",lane="low",market="acme"} 1.0' in text
    assert 'lanes_enqueue_to_start_seconds_count{lane="high",market="acme"} 2.0' in text
    assert 'lanes_budget_wait_seconds_count{lane="high",market="acme"} 2.0' in text
    assert 'lanes_queue_depth{lane="medium",market="acme",state="visible"}' in text
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0


@pytest.mark.slow
async def test_sigkill_mid_post_stops_the_side_effect_for_a_person(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    spawn_worker: Spawn,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    """Issue 12 (3), rule 11: a worker killed while its ship POST (a `call`) is at the market:
    the next worker takes the claim over resumed ("posting", its holder gone), and since
    nothing can check a `call` POST it does not post again: it dead-letters the message with
    reason "outcome unknown" for a person. One POST. (Jobs whose market can tell resume:
    tests/test_effect_resume.py.)"""
    settings = make_settings(config=acme_toml(acme, tmp_path / "lanes.toml"))
    await lanes.send(Lane.HIGH, [job("ship", id="ship-k", order="o", sleep=3)])
    process = spawn_worker(settings)

    async def posted() -> bool:
        return len(acme.calls("/ship")) == 1

    await wait_until(posted)
    process.kill()
    await asyncio.to_thread(process.wait, 10)
    worker = await start_worker(settings, acme_config(acme))
    dead: list[str] = []

    async def dead_lettered() -> bool:
        dead.extend(
            m.message_attributes[ATTR_REASON] for m in await lanes.take_all(Lane.HIGH, dead=True)
        )
        return bool(dead)

    await wait_until(dead_lettered, within=40)
    await worker.stop()
    assert dead[0].startswith("outcome unknown")
    assert len(acme.calls("/ship")) == 1
    assert results(settings) == []


@pytest.mark.slow
def test_an_unreachable_redis_fails_at_start_up_with_one_line(
    acme: AcmeMarket, lanes: Lanes, make_settings: Callable[..., WorkerSettings], tmp_path: Path
) -> None:
    """Issue 11: Redis that does not answer is a start-up error: exit 2, one line naming it
    (its password redacted), no traceback, no job dead-lettered."""
    settings = make_settings(config=acme_toml(acme, tmp_path / "lanes.toml"))
    env = dict(os.environ)
    for name in ("config", "sqs_endpoint_url", "queue_prefix"):
        env[f"LANES_{name.upper()}"] = str(getattr(settings, name))
    env["LANES_REDIS_URL"] = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [sys.executable, "-m", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("lanes: error: Redis at redis://:[redacted]@127.0.0.1:")
    assert "hunter2" not in done.stderr
