"""`lanes worker` checks each drained market's credentials at start-up: one line, exit 2,
instead of dead-lettering every job (paid ones included) as permanent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lanes.policy import Lane
from lanes.settings import Settings
from markets import load_config, missing_credentials
from markets.config import Config
from tests.fixtures_worker import AcmeMarket, Lanes, job

# A vendor's keys are its own: none set, each is asked per seller.
COUPANG_ENV = [
    "LANES_CREDENTIALS__ACME__<SELLER>_ACCESS_KEY",
    "LANES_CREDENTIALS__ACME__<SELLER>_SECRET_KEY",
]


def _config(tmp_path: Path, market: str, extra: str = "") -> Config:
    path = tmp_path / "lanes.toml"
    path.write_text(f'[markets.acme]\ncatalogue = "{market}"\n{extra}', encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    ("market", "credentials", "missing"),
    [
        ("coupang", {}, COUPANG_ENV),
        # Market-wide Coupang keys are nobody's: never used for a seller (issue 18).
        ("coupang", {"access_key": "a", "secret_key": "s"}, COUPANG_ENV),
        (
            "coupang",
            {"s-1_access_key": "a", "s-1_secret_key": "  "},
            ["LANES_CREDENTIALS__ACME__S-1_SECRET_KEY"],
        ),
        ("coupang", {"s-1_access_key": "a", "S-1.SECRET_KEY": "s"}, []),
        ("naver", {"client_id": "i"}, ["LANES_CREDENTIALS__ACME__CLIENT_SECRET"]),
        # Naver's application keys are market-wide only; a seller's account id is not one.
        (
            "naver",
            {"s-1_client_id": "i", "client_secret": "s"},
            ["LANES_CREDENTIALS__ACME__CLIENT_ID"],
        ),
    ],
)
def test_missing_credentials_names_the_variables_to_set(
    tmp_path: Path, market: str, credentials: dict[str, str], missing: list[str]
) -> None:
    """Env source: each key the auth scheme always reads, absent or blank, by variable name."""
    settings = Settings(credentials={"acme": credentials} if credentials else {})
    assert missing_credentials(_config(tmp_path, market), settings, "acme") == missing


def test_missing_credentials_reads_a_file_source(tmp_path: Path) -> None:
    """`file:` source: a seller's sub-table counts for Coupang; what is missing names the file."""
    secrets = tmp_path / "secrets.json"
    secrets.write_text('{"acme": {"s-1": {"access_key": "a"}}}', encoding="utf-8")
    config = _config(
        tmp_path, "coupang", f'[markets.acme.options]\ncredentials = "file:{secrets}"\n'
    )
    assert missing_credentials(config, Settings(), "acme") == [
        f"secret_key in {secrets}, table acme.s-1"
    ]


def test_missing_credentials_does_not_fetch_aws_sources_or_check_no_auth(tmp_path: Path) -> None:
    """Secrets Manager and SSM are fetched per job (per seller), never at start-up; a market
    with `auth = "none"` needs nothing."""
    aws = _config(tmp_path, "coupang", '[markets.acme.options]\ncredentials = "ssm:/lanes/"\n')
    assert missing_credentials(aws, Settings(), "acme") == []
    path = tmp_path / "plain.toml"
    path.write_text(
        '[markets.acme]\nbase_url = "http://127.0.0.1:9"\n'
        '[markets.acme.endpoints.orders]\nmethod = "GET"\npath = "/o"\nrps = 1\n',
        encoding="utf-8",
    )
    assert missing_credentials(load_config(path), Settings(), "acme") == []


@pytest.mark.slow
@pytest.mark.parametrize("command", [["-m", "worker"], ["-m", "scripts.cli", "worker"]])
async def test_a_worker_without_credentials_exits_2_and_sends_nothing(
    acme: AcmeMarket,
    lanes: Lanes,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    command: list[str],
) -> None:
    """`python -m worker` and `lanes worker` with a Coupang-auth market and no credentials:
    exit 2, one line naming the variables (no value), the queued job untouched, nothing
    dead-lettered, nothing sent to the market."""
    config = tmp_path / "lanes.toml"
    config.write_text(
        f'[markets.acme]\ncatalogue = "coupang"\nbase_url = "{acme.url}"\n', encoding="utf-8"
    )
    settings = make_settings(config=config)
    await lanes.send(Lane.HIGH, [job(id="paid")])
    env = {key: value for key, value in os.environ.items() if not key.startswith("LANES_CRED")}
    for name, value in settings.model_dump(exclude={"credentials"}).items():
        if value is not None:
            env[f"LANES_{name.upper()}"] = str(value)
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, *command], env=env, capture_output=True, text=True
    )
    assert (done.returncode, done.stderr.count("\n")) == (2, 1), done.stderr
    assert done.stderr.endswith(
        f"market acme has no credentials: set {', '.join(COUPANG_ENV)}\n"
    ), done.stderr
    assert await lanes.depth(Lane.HIGH) == (1, 0)
    assert await lanes.depth(Lane.HIGH, dead=True) == (0, 0)
    assert acme.calls() == []
