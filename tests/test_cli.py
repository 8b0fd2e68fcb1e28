"""The `lanes` command line: help with examples, one-line errors with the right exit code."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from scripts.cli import main
from scripts.services import free_port
from tests.fixtures_scripts import CliRun, LanesEnv

COMMANDS = ["worker", "enqueue", "replay", "provision", "status", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lanes COMMAND --help` exits 0 and shows examples."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "code", "fragment"),
    [
        ("frobnicate", 2, "invalid choice"),
        ("", 2, "required"),
        ("enqueue --lane low --file x", 2, "--market"),
        ("enqueue --market coupang --lane urgent --file x", 2, "urgent"),
        ("replay --market nowhere --lane low", 2, "unknown market 'nowhere'"),
        ("replay --market coupang --lane low --older-than soon", 2, "soon"),
        ("replay --market coupang --lane low --max 0", 2, "at least 1"),
        ("enqueue --market coupang --lane low --file /nonexistent", 2, "read"),
        ("replay --market coupang --lane low", 2, "does not exist"),
        ("worker --market nowhere", 2, "unknown market 'nowhere'"),
        ("worker --concurrency many", 2, "not a whole number"),
        ("enqueue --market coupang --lane low --kind ship_order --seller A1", 2, "backfill mode"),
        (
            "enqueue --market coupang --lane low --kind collect_orders --seller A1 "
            "--since 2025-02-01 --until 2025-01-01",
            2,
            "before",
        ),
    ],
)
def test_user_mistakes_are_one_line(
    lanes_env: LanesEnv,
    run_cli: Callable[..., CliRun],
    command: str,
    code: int,
    fragment: str,
) -> None:
    """A bad argument, unknown market or missing queue: one `lanes: error:` line, exit 2."""
    result = run_cli(*command.split())
    assert result.code == code
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("lanes: error: ")
    assert fragment in lines[0]


def test_bad_setting_and_missing_config_are_one_line(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong LANES_* value or a missing TOML file is a one-line configuration error."""
    monkeypatch.setenv("LANES_QUEUE_PREFIX", "no spaces allowed")
    result = run_cli("status")
    assert (result.code, result.err.count("\n")) == (2, 1)
    assert "queue_prefix" in result.err
    monkeypatch.setenv("LANES_QUEUE_PREFIX", lanes_env.prefix)
    monkeypatch.setenv("LANES_CONFIG", str(lanes_env.config.with_name("missing.toml")))
    result = run_cli("status")
    assert (result.code, result.err.count("\n")) == (2, 1)
    assert "missing.toml" in result.err


def test_unreachable_sqs_is_a_runtime_error(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQS not answering is a failure while running: one line, exit 1."""
    monkeypatch.setenv("LANES_SQS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    result = run_cli("provision", "--market", "coupang")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert result.err.startswith("lanes: error: SQS")


def test_worker_runs_until_sigterm(lanes_env: LanesEnv, run_cli: Callable[..., CliRun]) -> None:
    """`lanes worker` drains the provisioned lanes and exits 0 on SIGTERM."""
    assert run_cli("provision", "--market", "naver").code == 0
    env = {**lanes_env.subprocess_env(), "LANES_WAIT_SECONDS": "1", "LANES_GRACE_SECONDS": "2"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "worker", "--market", "naver"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "worker.started" in out
