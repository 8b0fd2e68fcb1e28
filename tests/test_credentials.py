"""Credentials per seller from a pluggable source: settings, a file, AWS by name."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aioboto3
import pytest
from pydantic import SecretStr

from lanes import ConfigError
from markets import PermanentError
from markets.credentials import Credentials, SettingsSource, credential_source
from scripts.services import MotoServer


def _env(**values: str) -> Credentials:
    secrets = {key: SecretStr(value) for key, value in values.items()}
    return Credentials("coupang", SettingsSource({"COUPANG": secrets}))


async def test_seller_keys_win_then_market_wide_ones() -> None:
    """`<seller>.name` or `<seller>_name` for that seller; others get the market-wide key."""
    credentials = _env(
        secret_key="shared", **{"a0001.secret_key": "dotted", "A0002_SECRET_KEY": "underscored"}
    )
    assert (await credentials.get("secret_key", "A0001")).get_secret_value() == "dotted"
    assert (await credentials.get("secret_key", "a0002")).get_secret_value() == "underscored"
    assert (await credentials.get("secret_key", "A0003")).get_secret_value() == "shared"
    assert (await credentials.get("secret_key")).get_secret_value() == "shared"


async def test_a_missing_credential_names_the_seller_and_where_to_set_it() -> None:
    """Missing: a PermanentError naming the seller, the credential and the source."""
    expected = r"'client_id' for seller 's-1' \(set LANES_CREDENTIALS__NAVER__CLIENT_ID\)"
    with pytest.raises(PermanentError, match=expected):
        await Credentials("naver", SettingsSource({})).get("client_id", "s-1")


async def test_the_secret_never_shows_in_a_repr_or_an_error() -> None:
    """Values stay SecretStr; an error for another credential shows no secret."""
    credentials = _env(secret_key="$2a$04$x")
    assert "$2a$" not in repr(await credentials.get("secret_key"))
    with pytest.raises(PermanentError) as raised:
        await credentials.get("access_key", "A1", shared=False)
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
    assert (await credentials.get("client_id", "s-1")).get_secret_value() == "app"
    assert (await credentials.optional("account_id", "s-1")) == SecretStr("acc-1")
    assert await credentials.optional("account_id", "s-2") is None


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
    seller with no secret falls back to the market-wide one, then is a PermanentError."""
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
    assert (await credentials.get("access_key", "A0002")).get_secret_value() == "shared-ak"
    with pytest.raises(PermanentError, match="'secret_key' for seller 'A0002'"):
        await credentials.get("secret_key", "A0002")
