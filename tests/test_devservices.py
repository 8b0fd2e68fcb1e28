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

from scripts.devservices import EXAMPLES, export_lines
from scripts.services import free_port


def test_export_lines_quote_what_a_shell_would_expand() -> None:
    """Naver's test secret holds `$`: the line must paste into a shell unchanged."""
    lines = export_lines("redis://127.0.0.1:1/0", "http://127.0.0.1:2", Path("/x/lanes.toml"))
    assert "export LANES_SQS_ENDPOINT_URL=http://127.0.0.1:2" in lines
    secret = next(line for line in lines if "NAVER__CLIENT_SECRET" in line)
    assert secret.endswith("='$2a$04$abcdefghijklmnopqrstuu'")


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
    """With `lanes services` up and its export lines set, the README's commands (provision,
    enqueue examples/jobs.jsonl, worker) do every example job; Ctrl-C stops the services
    and exits 0."""
    coupang, naver = free_port(), free_port()
    services = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "services",
         "--coupang-port", str(coupang), "--naver-port", str(naver)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        exports = _exports(services)
        config = (EXAMPLES / "lanes.toml").read_text(encoding="utf-8")
        config = config.replace(":8081", f":{coupang}").replace(":8082", f":{naver}")
        (tmp_path / "lanes.toml").write_text(config, encoding="utf-8")
        results = tmp_path / "results.jsonl"
        env = {**os.environ, **exports, "LANES_CONFIG": str(tmp_path / "lanes.toml"),
               "LANES_QUEUE_PREFIX": f"ex{coupang}", "LANES_RESULTS_URL": f"file:{results}",
               "LANES_WAIT_SECONDS": "1", "LANES_LOG_LEVEL": "error"}  # fmt: skip
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
