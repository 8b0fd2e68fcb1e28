"""`lanes demo`: a short burst with and without lanes, its verdict, chart and clean-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from lanes.policy import Lane
from markets.registry import MARKETS
from scripts.demo.load import LIMITS, ROUTE_LANES, plan_burst
from scripts.demo.measure import RunTally, peak_in_window


def test_peak_counts_the_busiest_trailing_window() -> None:
    assert peak_in_window([]) == 0
    assert peak_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert peak_in_window([0.0, 0.1, 0.2, 5.0], seconds=5.0) == 3


def test_the_burst_puts_each_lane_on_its_own_routes() -> None:
    """Every lane has work in both markets, high arrives after the others started, and
    the routes that tell lanes apart at the market are distinct per market."""
    plan = plan_burst(duration=20, sellers=10)
    for market in LIMITS:
        lanes = {job.lane for job in plan if job.market == market}
        assert lanes == set(Lane)
        assert len(set(ROUTE_LANES[market])) == len(ROUTE_LANES[market])
    first_high = min(job.at for job in plan if job.lane is Lane.HIGH)
    assert first_high > max(job.at for job in plan if job.lane is Lane.MEDIUM)
    assert len({job.id for job in plan}) == len(plan)


def test_every_message_of_the_burst_is_a_valid_job() -> None:
    """Each body names a job kind of its market with a payload that kind accepts: a body
    the workers would dead-letter as permanent would drop a whole lane from the demo."""
    for job in plan_burst(duration=60, sellers=150):
        body = json.loads(job.body)
        spec = MARKETS[body["market"]].jobs[body["kind"]]
        spec.model.model_validate(body["payload"])


def test_a_message_is_lost_only_when_no_end_explains_it() -> None:
    tally = RunTally("t")
    tally.sent_at = {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}
    tally.done_at = {"a": 1.0}
    tally.dead = {"b": "permanent"}
    tally.left = {"c"}
    assert tally.totals() == {"done": 1, "dead": 1, "left": 1, "lost": 1}


@pytest.mark.slow
@pytest.mark.faults  # measured ceilings: run alone
@pytest.mark.timeout(400)
def test_a_short_demo_holds_and_draws_its_chart(tmp_path: Path) -> None:
    """`lanes demo --duration 10 --sellers 20` exits 0 (no 429, nothing lost, every high
    job done, ceilings held), writes its PNG to the working directory, and leaves no
    temporary folder behind."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "demo", "--duration", "10", "--sellers", "20",
         "--workers", "2"],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(Path.cwd())},
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "result: OK" in done.stdout
    assert "without lanes" in done.stdout
    chart = tmp_path / "lanes-demo.png"
    assert f"chart: {chart}" in done.stdout
    image = matplotlib.image.imread(chart)
    assert image.shape[0] > 100
    assert image.shape[1] > 100
    assert list(temp.iterdir()) == []
