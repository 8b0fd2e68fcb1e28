"""Pausing a lane (worker/pauses.py, `lanes pause`/`lanes resume`, the board's buttons): while
the flag is set the worker receives nothing from that lane and the other lanes run on; once
cleared, the lane drains. The flag records who set it and when."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lanes import RedisStore
from lanes.policy import Lane
from tests.fixtures_markets import acme_config
from tests.fixtures_scripts import CliRun, LanesEnv
from tests.fixtures_worker import AcmeMarket, Lanes, RunningWorker, job, wait_until
from worker.pauses import PAUSED_KEY, LanePauses
from worker.settings import WorkerSettings


async def test_a_paused_lane_is_not_received_until_resumed(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., WorkerSettings],
    start_worker: Callable[..., Awaitable[RunningWorker]],
    store: RedisStore,
) -> None:
    pauses = LanePauses(store.client)
    await pauses.pause("acme", Lane.LOW, by="test")
    await lanes.send(Lane.LOW, [job(id="low-1", key="low-1")])
    await lanes.send(Lane.HIGH, [job(id="high-1", key="high-1")])
    await start_worker(make_settings(), acme_config(acme))

    async def high_done() -> bool:
        return await lanes.depth(Lane.HIGH) == (0, 0) and len(acme.calls()) == 1

    await wait_until(high_done)
    # The high job is done, and the low one was never received (a second's worth of polls
    # of the other lanes went by: the poller reads the flags at least once a second).
    assert await lanes.depth(Lane.LOW) == (1, 0)
    assert [call.query["key"] for call in acme.calls()] == ["high-1"]
    assert await pauses.resume("acme", Lane.LOW, by="test")

    async def low_done() -> bool:
        return len(acme.calls()) == 2 and await lanes.depth(Lane.LOW) == (0, 0)

    await wait_until(low_done)


async def test_a_hand_set_flag_still_pauses(
    store: RedisStore,
) -> None:
    await store.client.hset(PAUSED_KEY, "acme:high", "not json")
    pauses = LanePauses(store.client, refresh=0.0)
    assert await pauses.paused("acme", Lane.HIGH)
    assert (await pauses.all())["acme:high"]["by"] == "?"


def test_lanes_pause_and_resume(lanes_env: LanesEnv, run_cli: Callable[..., CliRun]) -> None:
    paused = run_cli("pause", "-m", "coupang", "-l", "low", "--by", "alice")
    assert paused.code == 0
    assert "paused coupang low (by alice at " in paused.out
    resumed = run_cli("resume", "-m", "coupang", "-l", "low")
    assert resumed.out.splitlines()[-1] == "resumed coupang low"  # after the JSON log line
    again = run_cli("resume", "-m", "coupang", "-l", "low")
    assert again.out.splitlines()[-1] == "coupang low was not paused"
    unknown = run_cli("pause", "-m", "nowhere", "-l", "low")
    assert unknown.code == 2
    assert unknown.err.startswith("lanes: error:")
