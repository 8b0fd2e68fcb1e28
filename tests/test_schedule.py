"""scripts.tools.schedule: each tick enqueues one collection job per seller, once however many
schedulers run, spread over the tick (moto's SQS server, the test Redis)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

import markets
from lanes.settings import load_settings
from lanes.store import RedisStore
from scripts.settings import CliSettings
from scripts.tools.enqueue import BadInput
from scripts.tools.schedule import Plan, Scheduler, handler
from tests.fixtures_scripts import CONFIG, CliRun, LanesEnv
from worker.sqs import SqsClient

TICK_AT = 1_780_000_000.0  # any moment: the tick is the period it falls in


def _sellers(path: Path, count: int) -> Path:
    path.write_text("# sellers of naver\n" + "".join(f"S{n:05d}\n" for n in range(count)))
    return path


async def _queue(env: LanesEnv, sqs: SqsClient) -> str:
    return await sqs.create_queue(env.queue("naver", "medium"), {})


async def _depths(sqs: SqsClient, url: str) -> tuple[int, int]:
    names = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed")
    found = await sqs.attributes(url, names)
    return int(found[names[0]]), int(found[names[1]])


async def _tick_twice_at_once(settings: CliSettings, plan: Plan, at: float = TICK_AT) -> list[int]:
    """Two schedulers, each with its own Redis and SQS connections, tick the same moment."""
    config = markets.load_config(settings.config)

    async def one() -> int:
        async with (
            RedisStore(settings.redis_url) as store,
            SqsClient(endpoint_url=settings.sqs_endpoint_url) as sqs,
        ):
            scheduler = Scheduler(plan, settings=settings, config=config, store=store, sqs=sqs)
            return (await scheduler.tick(at)).sent

    return list(await asyncio.gather(one(), one()))


@pytest.mark.slow
async def test_a_tick_for_5000_sellers_enqueues_5000_jobs_once_with_two_schedulers(
    lanes_env: LanesEnv, tmp_path: Path
) -> None:
    """Both schedulers tick the same moment: one sends all 5,000, the other none; the same
    tick again sends nothing. Spread over 300 s, a message is visible only once its delay
    (at most 17 sellers per second) has passed since it was sent."""
    settings = load_settings(CliSettings)
    plan = Plan("naver", spread=300, sellers_file=_sellers(tmp_path / "sellers.txt", 5000))
    async with SqsClient(endpoint_url=lanes_env.sqs_endpoint) as sqs:
        url = await _queue(lanes_env, sqs)
        started = time.monotonic()
        assert sorted(await _tick_twice_at_once(settings, plan)) == [0, 5000]
        assert sorted(await _tick_twice_at_once(settings, plan)) == [0, 0]
        visible, delayed = await _depths(sqs, url)
        seconds = math.ceil(time.monotonic() - started)
    assert visible + delayed == 5000
    assert visible <= 17 * (seconds + 1)
    assert delayed >= 5000 - 17 * (seconds + 1)


async def test_each_job_is_the_sellers_collection_from_its_watermark(
    lanes_env: LanesEnv, tmp_path: Path
) -> None:
    """A job per seller: kind collect_orders with no window (the watermark says where to
    read from, so a missed tick loses nothing), MessageGroupId = seller, an id naming the
    tick; the next tick sends again."""
    settings = load_settings(CliSettings)
    plan = Plan("naver", spread=0, every=600, sellers_file=_sellers(tmp_path / "s.txt", 25))
    async with SqsClient(endpoint_url=lanes_env.sqs_endpoint) as sqs:
        url = await _queue(lanes_env, sqs)
        assert sorted(await _tick_twice_at_once(settings, plan)) == [0, 25]
        messages = []
        while got := await sqs.receive(url, max_messages=10, wait_seconds=0):
            messages.extend(got)
        assert sorted(await _tick_twice_at_once(settings, plan, TICK_AT + 600)) == [0, 25]
    bodies = [json.loads(m.body) for m in messages]
    assert sorted(b["seller"] for b in bodies) == [f"S{n:05d}" for n in range(25)]
    assert {(b["kind"], b["market"], json.dumps(b.get("payload", {}))) for b in bodies} == {
        ("collect_orders", "naver", "{}")
    }
    assert len({b["id"] for b in bodies}) == 25
    assert all(m.attributes["MessageGroupId"] == json.loads(m.body)["seller"] for m in messages)


def _offline(plan: Plan, tmp_path: Path) -> Scheduler:
    """A scheduler for what needs no Redis or SQS (building and checking messages)."""
    config = tmp_path / "lanes.toml"
    config.write_text(CONFIG)
    return Scheduler(
        plan,
        settings=CliSettings(),
        config=markets.load_config(config),
        store=cast(RedisStore, None),
        sqs=cast(SqsClient, None),
    )


def test_the_spread_puts_at_most_a_few_sellers_in_each_second(tmp_path: Path) -> None:
    """5,000 sellers over 300 s: delays 0 to 299 s, at most 17 sellers in any second."""
    scheduler = _offline(Plan("naver", spread=300), tmp_path)
    delays = [m.delay_seconds for m in scheduler.messages([f"S{n}" for n in range(5000)], 0)]
    assert min(delays) == 0
    assert max(delays) == 299
    assert max(delays.count(second) for second in set(delays)) == 17


def test_a_seller_the_worker_could_not_run_stops_the_tick_before_sending(tmp_path: Path) -> None:
    """Every job is checked first, as `lanes enqueue` checks it: a bad seller is named."""
    scheduler = _offline(Plan("naver"), tmp_path)
    with pytest.raises(BadInput, match=r"seller 'bad\{name\}'"):
        scheduler.messages(["S1", "bad{name}"], 0)


def test_the_lambda_handler_ticks_once_per_scheduled_time(
    lanes_env: LanesEnv, tmp_path: Path
) -> None:
    """The EventBridge rule's event, delivered twice (at-least-once), sends one tick."""
    sellers = _sellers(tmp_path / "sellers.txt", 12)
    asyncio.run(_make_queue(lanes_env))
    event = {"market": "naver", "every": "10m", "at": "2026-12-04T10:00:00Z",
             "sellers_file": str(sellers)}  # fmt: skip
    first, second = handler(event, None), handler(event, None)
    assert (first["sent"], second["sent"]) == (12, 0)
    assert first["tick"] == "2026-12-04T10:00:00+00:00"


async def _make_queue(env: LanesEnv) -> None:
    async with SqsClient(endpoint_url=env.sqs_endpoint) as sqs:
        await _queue(env, sqs)


def test_lanes_schedule_once_from_the_credential_file(
    lanes_env: LanesEnv, tmp_path: Path, run_cli: Callable[..., CliRun]
) -> None:
    """`lanes schedule --once` lists the sellers from a `file:` credential source (a table per
    seller) and says what it sent; `--dry-run` prints the bodies."""
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"naver": {"client_id": "x", "A1": {}, "B2": {}}}))
    lanes_env.config.write_text(
        lanes_env.config.read_text()
        + f'\n[markets.naver.options]\ncredentials = "file:{secrets}"\n'
    )
    asyncio.run(_make_queue(lanes_env))
    dry = run_cli("schedule", "-m", "naver", "--dry-run")
    assert dry.code == 0
    assert [json.loads(line)["seller"] for line in dry.out.splitlines()] == ["A1", "B2"]
    done = run_cli("schedule", "-m", "naver", "--once")
    assert done.code == 0, done.err
    assert done.out.endswith(": sent 2\n")
    again = run_cli("schedule", "-m", "naver", "--once")
    assert again.out.endswith("taken by another scheduler, sent 0\n")


def test_env_credentials_cannot_list_sellers(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """Without a seller list, env credentials are one clear line and exit 2."""
    result = run_cli("schedule", "-m", "naver", "--once")
    assert result.code == 2
    assert "cannot list sellers" in result.err
    assert "Traceback" not in result.err
