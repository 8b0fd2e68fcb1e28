"""Credentials per seller from a pluggable source: settings, a file, AWS by name."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from pydantic import SecretStr

from lanes import ConfigError
from lanes.policy import Lane
from markets import PermanentError
from markets.coupang.simulator import coupang_app
from markets.credentials import Credentials, SettingsSource, credential_source
from markets.naver.simulator import naver_app
from scripts.local.services import MotoServer
from tests.fixtures_markets import NAVER_APP, StartSimulator, markets_config
from worker.outcomes import Action
from worker.queues import Delivery, QueueName
from worker.runtime import Runtime
from worker.settings import WorkerSettings
from worker.sqs import SqsMessage


def _env(**values: str) -> Credentials:
    secrets = {key: SecretStr(value) for key, value in values.items()}
    return Credentials("coupang", SettingsSource({"COUPANG": secrets}))


async def test_a_seller_key_is_the_sellers_own_never_the_market_wide_one() -> None:
    """`<seller>.name` or `<seller>_name` for that seller; a seller without its own is a
    PermanentError naming it and where to set it (the market-wide value is not used: it
    would sign the seller's requests with someone else's key)."""
    credentials = _env(
        secret_key="shared", **{"a0001.secret_key": "dotted", "A0002_SECRET_KEY": "underscored"}
    )
    assert (await credentials.get("secret_key", "A0001")).get_secret_value() == "dotted"
    assert (await credentials.get("secret_key", "a0002")).get_secret_value() == "underscored"
    expected = r"'secret_key' for seller 'A0003' \(set LANES_CREDENTIALS__COUPANG__A0003_SECRET"
    with pytest.raises(PermanentError, match=expected):
        await credentials.get("secret_key", "A0003")
    assert (await credentials.get("secret_key")).get_secret_value() == "shared"


async def test_a_missing_credential_names_where_to_set_it() -> None:
    """Missing: a PermanentError naming the credential, whose it is and the source."""
    expected = r"'client_id' for the market \(set LANES_CREDENTIALS__NAVER__CLIENT_ID\)"
    with pytest.raises(PermanentError, match=expected):
        await Credentials("naver", SettingsSource({})).get("client_id")
    expected = r"'account_id' for seller 's-1' \(set LANES_CREDENTIALS__NAVER__S-1_ACCOUNT_ID\)"
    with pytest.raises(PermanentError, match=expected):
        await Credentials("naver", SettingsSource({})).get("account_id", "s-1")


async def test_the_secret_never_shows_in_a_repr_or_an_error() -> None:
    """Values stay SecretStr; an error for another credential shows no secret."""
    credentials = _env(secret_key="$2a$04$x")
    assert "$2a$" not in repr(await credentials.get("secret_key"))
    with pytest.raises(PermanentError) as raised:
        await credentials.get("access_key", "A1")
    assert "$2a$" not in str(raised.value)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
async def test_a_json_or_toml_file_holds_market_wide_and_per_seller_values(
    tmp_path: Path, suffix: str
) -> None:
    """`{market: {name: v, seller: {name: v}}}`, as JSON or TOML."""
    path = tmp_path / f"credentials{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"naver": {"client_id": "app", "s-1": {"account_id": "acc-1"}}}))
    else:
        path.write_text('[naver]\nclient_id = "app"\n[naver.s-1]\naccount_id = "acc-1"\n')
    credentials = Credentials("naver", credential_source(f"file:{path}", {}))
    assert (await credentials.get("client_id")).get_secret_value() == "app"
    assert (await credentials.get("account_id", "s-1")) == SecretStr("acc-1")
    with pytest.raises(PermanentError, match=r"seller 's-2' \(set account_id in .*naver\.s-2\)"):
        await credentials.get("account_id", "s-2")


def test_a_wrong_source_is_a_one_line_config_error(tmp_path: Path) -> None:
    """An unknown source or an unreadable file: ConfigError, no traceback, no content."""
    with pytest.raises(ConfigError, match="not a source"):
        credential_source("vault:x", {})
    with pytest.raises(ConfigError, match="cannot read credentials"):
        credential_source(f"file:{tmp_path / 'absent.json'}", {})


@pytest.mark.slow
@pytest.mark.parametrize("service", ["secretsmanager", "ssm"])
async def test_aws_secrets_by_name_per_seller(moto_server: MotoServer, service: str) -> None:
    """`<prefix><market>/<seller>` in Secrets Manager or SSM: a JSON object per seller; a
    seller with no secret of its own is a PermanentError (never the market-wide one)."""
    prefix = f"/lanes-{uuid.uuid4().hex[:8]}/"
    values = {
        f"{prefix}coupang": {"access_key": "shared-ak"},
        f"{prefix}coupang/A0001": {"access_key": "own-ak", "secret_key": "own-sk"},
    }
    async with aioboto3.Session().client(service, endpoint_url=moto_server.url) as client:
        for name, value in values.items():
            if service == "ssm":
                await client.put_parameter(Name=name, Value=json.dumps(value), Type="SecureString")
            else:
                await client.create_secret(Name=name, SecretString=json.dumps(value))
    source = credential_source(f"{service}:{prefix}@{moto_server.url}", {})
    credentials = Credentials("coupang", source)
    assert (await credentials.get("access_key", "A0001")).get_secret_value() == "own-ak"
    assert (await credentials.get("access_key")).get_secret_value() == "shared-ak"
    with pytest.raises(PermanentError, match="'access_key' for seller 'A0002'"):
        await credentials.get("access_key", "A0002")


# -- a seller without keys, through the worker --------------------------------------------


def _delivery(seller: str, market: str = "coupang", **payload: object) -> Delivery:
    job = {"kind": "get_product", "market": market, "seller": seller, "payload": payload}
    message = SqsMessage(
        message_id=f"m-{market}-{seller}",
        body=json.dumps(job),
        receipt_handle="unused",
        attributes={"ApproximateReceiveCount": "1"},
    )
    return Delivery(message=message, queue=QueueName("t", market, Lane.HIGH), url="")


async def test_a_seller_without_keys_is_a_dead_letter_and_nothing_is_signed_for_it(
    start_simulator: StartSimulator,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: Callable[[WorkerSettings, Any], Awaitable[Runtime]],
) -> None:
    """Issue 18: vendor A00099999 has no keys of its own while the market-wide keys and
    another vendor's are set (both valid at the market): its job is a dead letter naming
    the seller and the setting, and no request reaches the market at all (the simulator
    records every key it sees). The old code signed it with the market-wide keys."""
    keys = {
        "app-access-key": ("A00099999", "app-secret"),
        "test-access-key": ("A00012345", "test-secret-key"),
    }
    sim = await start_simulator(coupang_app(keys=keys, orders=5))
    settings = make_settings(
        credentials={
            "coupang": {
                "access_key": "app-access-key",
                "secret_key": "app-secret",
                "A00012345_access_key": "test-access-key",
                "A00012345_secret_key": "test-secret-key",
            }
        }
    )
    runtime = await make_runtime(settings, markets_config(coupang=sim.url))
    outcome = await runtime.processor.process(
        _delivery("A00099999", seller_product_id=1_000_000), deadline=None
    )
    assert outcome.action is Action.DEAD_LETTER
    assert outcome.error is not None
    assert "seller 'A00099999'" in outcome.error
    assert "LANES_CREDENTIALS__COUPANG__A00099999_ACCESS_KEY" in outcome.error
    assert sum(sim.state.keys_seen.values()) == 0
    served = await runtime.processor.process(
        _delivery("A00012345", seller_product_id=1_000_000), deadline=None
    )
    assert served.action is Action.DELETE
    assert dict(sim.state.keys_seen) == {"test-access-key": 1}


async def test_a_naver_seller_without_its_account_id_asks_no_token(
    start_simulator: StartSimulator,
    make_settings: Callable[..., WorkerSettings],
    make_runtime: Callable[[WorkerSettings, Any], Awaitable[Runtime]],
) -> None:
    """A solution app (token_type SELLER): a seller without its own `account_id` is a dead
    letter naming it; no token is asked for it (the old code asked one for its name)."""
    sim = await start_simulator(naver_app())
    config = markets_config(naver=sim.url, extra={"naver": {"options": {"token_type": "SELLER"}}})
    settings = make_settings(credentials={"naver": NAVER_APP})
    runtime = await make_runtime(settings, config)
    delivery = _delivery("s-1", "naver", origin_product_no=5_000_000)
    outcome = await runtime.processor.process(delivery, deadline=None)
    assert outcome.action is Action.DEAD_LETTER
    assert outcome.error is not None
    assert "'account_id' for seller 's-1'" in outcome.error
    assert sum(sim.state.keys_seen.values()) == 0
