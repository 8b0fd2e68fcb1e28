"""Fixtures for the scripts tests: a lanes environment on the test Redis and moto server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripts.cli import main
from scripts.local.moto_server import QuickMotoServer
from scripts.local.services import RedisServer

CONFIG = """
[lanes.low]
max_attempts = 3

[markets.coupang]
catalogue = "coupang"
base_url = "http://127.0.0.1:9"

[markets.naver]
catalogue = "naver"
base_url = "http://127.0.0.1:9"
"""


@dataclass
class LanesEnv:
    """Settings for one test: its own queue prefix, the test Redis and moto server."""

    prefix: str
    config: Path
    redis_url: str
    sqs_endpoint: str
    variables: dict[str, str] = field(default_factory=dict)

    def queue(self, market: str, lane: str, *, dead_letter: bool = False) -> str:
        return f"{self.prefix}-{market}-{lane}" + ("-dlq" if dead_letter else "")

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, **self.variables}


@pytest.fixture(scope="session")
def quick_moto() -> Iterator[QuickMotoServer]:
    """moto's SQS server with a cheaper clock (see `scripts.local.moto_server`), for the session."""
    server = QuickMotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lanes_env(
    tmp_path: Path,
    quick_moto: QuickMotoServer,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> LanesEnv:
    """`LANES_*` set for this test (coupang and naver markets); a fresh queue prefix."""
    config = tmp_path / "lanes.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env = LanesEnv(
        prefix=f"t{uuid.uuid4().hex[:10]}",
        config=config,
        redis_url=redis_server.url,
        sqs_endpoint=quick_moto.url,
    )
    env.variables = {
        "LANES_CONFIG": str(config),
        "LANES_REDIS_URL": env.redis_url,
        "LANES_SQS_ENDPOINT_URL": env.sqs_endpoint,
        "LANES_QUEUE_PREFIX": env.prefix,
    }
    for name, value in env.variables.items():
        monkeypatch.setenv(name, value)
    return env


@dataclass(frozen=True)
class CliRun:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """Factory: `run_cli("status", "--json")` runs `lanes` in this process (sync tests only)."""

    def run(*args: str) -> CliRun:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return run
