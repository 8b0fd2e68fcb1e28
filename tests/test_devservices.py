"""`lanes services` and the examples: a newcomer's first run by hand, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import markets
from lanes.errors import LanesError
from scripts.local.devservices import EXAMPLES, export_lines, services_config
from scripts.local.services import SimulatorServer, free_port


def test_export_lines_quote_what_a_shell_would_expand() -> None:
    """Naver's test secret holds `$`: the line must paste into a shell unchanged."""
    lines = export_lines("redis://127.0.0.1:1/0", "http://127.0.0.1:2", Path("/x/lanes.toml"))
    assert "export LANES_SQS_ENDPOINT_URL=http://127.0.0.1:2" in lines
    secret = next(line for line in lines if "NAVER__CLIENT_SECRET" in line)
    assert secret.endswith("='$2a$04$abcdefghijklmnopqrstuu'")


def test_the_exported_config_has_the_simulators_ports(tmp_path: Path) -> None:
    """`--coupang-port 9081`: LANES_CONFIG names a copy of examples/lanes.toml whose base
    URLs are the simulators' (Naver's under /external); on the default ports, the example."""
    moved = [SimulatorServer("coupang", 10.0, port=9081), SimulatorServer("naver", 10.0, port=9082)]
    config = markets.load_config(services_config(moved, tmp_path))
    assert config.market("coupang").base_url == "http://127.0.0.1:9081"
    assert config.market("naver").base_url == "http://127.0.0.1:9082/external"
    assert (
        config.market("coupang").groups
        == markets.load_config(EXAMPLES / "lanes.toml").market("coupang").groups
    )  # the rest of the example is kept
    default = [
        SimulatorServer("coupang", 10.0, port=8081),
        SimulatorServer("naver", 10.0, port=8082),
    ]
    assert services_config(default, tmp_path) == EXAMPLES / "lanes.toml"


def test_a_child_that_exits_while_starting_fails_at_once() -> None:
    """A simulator that cannot start is one error naming it and its exit code, not a ready
    check answered by whatever else listens on the port."""
    broken = SimulatorServer("coupang", 10.0, module="scripts.no_such_module", port=free_port())
    with pytest.raises(LanesError, match=r"coupang simulator on port \d+ exited while starting"):
        broken.start()
    assert broken.exit_code is None  # stopped and forgotten


@pytest.mark.slow
def test_a_taken_port_is_one_line_and_nothing_is_announced() -> None:
    """With another simulator already on the Coupang port (the port taken by someone
    else's `lanes services`), `lanes services` prints one error line naming the port and
    the option, exits 1, and prints no export line pointing at a simulator it did not start."""
    squatter = SimulatorServer("coupang", 10.0, port=free_port())
    with squatter:
        done = subprocess.run(
            [sys.executable, "-m", "scripts.cli", "services",
             "--coupang-port", str(squatter.port), "--naver-port", str(free_port())],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"lanes: error: port {squatter.port} is taken by another process: stop it, or choose "
        "another with --coupang-port"
    ]


def _exports(process: subprocess.Popen[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            found[name] = value.strip("'")
        if "Ctrl-C here" in line:
            return found
    raise AssertionError("lanes services ended before it was up")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_services_run_the_example_jobs_and_stop_on_ctrl_c(tmp_path: Path) -> None:
    """With `lanes services` up on ports of its choice and its export lines set (their
    LANES_CONFIG as it is), the README's commands (provision, enqueue examples/jobs.jsonl,
    worker) do every example job; Ctrl-C stops the services and exits 0."""
    coupang, naver = free_port(), free_port()
    services = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "services",
         "--coupang-port", str(coupang), "--naver-port", str(naver)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        exports = _exports(services)
        results = tmp_path / "results.jsonl"
        env = {**os.environ, **exports, "LANES_QUEUE_PREFIX": f"ex{coupang}",
               "LANES_RESULTS_URL": f"file:{results}", "LANES_WAIT_SECONDS": "1",
               "LANES_LOG_LEVEL": "error"}  # fmt: skip
        lanes = [sys.executable, "-m", "scripts.cli"]
        for args in (
            ["provision"],
            ["enqueue", "--market", "coupang", "--lane", "high", "--file",
             str(EXAMPLES / "jobs.jsonl")],
        ):  # fmt: skip
            done = subprocess.run([*lanes, *args], env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        worker = subprocess.Popen([*lanes, "worker"], env=env)
        expected = len((EXAMPLES / "jobs.jsonl").read_text(encoding="utf-8").splitlines())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if (
                results.exists()
                and len(results.read_text(encoding="utf-8").splitlines()) >= expected
            ):
                break
            time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        kinds = [json.loads(line)["kind"] for line in results.read_text().splitlines()]
        assert sorted(kinds) == ["answer_inquiry", "get_product", "ship_order"]
    finally:
        services.send_signal(signal.SIGINT)
        assert services.wait(timeout=60) == 0
