"""The durable store of Cafe24's rotating refresh tokens: the JSON credentials file written
by compare-and-swap, other keys kept, a refused mark tied to the token refused, and the
sources that cannot be written refused with one clear line."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aioboto3
import pytest

from markets import PermanentError
from markets.cafe24.refresh_store import (
    AwsRefreshStore,
    FileRefreshStore,
    Stored,
    fingerprint,
    refresh_store,
)
from scripts.local.services import MotoServer


def _text(path: Path) -> str:
    return path.read_text()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "credentials.json"
    file.write_text(
        json.dumps(
            {
                "coupang": {"A1": {"access_key": "k"}},
                "cafe24": {"client_id": "id", "MallOne": {"Refresh_Token": "r0", "note": "kept"}},
            }
        )
    )
    return file


async def test_a_swap_writes_the_new_token_and_keeps_everything_else(path: Path) -> None:
    """The mall's entry (matched without case) takes the new token and the one it replaced;
    other markets, app keys and the mall's other keys stay."""
    store = FileRefreshStore(path, "cafe24")
    assert await store.read("mallone") == Stored("r0")
    assert await store.swap("mallone", "r0", Stored("r1", previous_refresh_token="r0"))
    raw = json.loads(_text(path))
    assert raw["coupang"] == {"A1": {"access_key": "k"}}
    assert raw["cafe24"]["client_id"] == "id"
    assert raw["cafe24"]["MallOne"] == {
        "note": "kept",
        "refresh_token": "r1",
        "previous_refresh_token": "r0",
    }
    assert await store.read("MALLONE") == Stored("r1", previous_refresh_token="r0")


async def test_a_swap_from_a_token_no_longer_held_writes_nothing(path: Path) -> None:
    """A writer that refreshed from an older token (its lock lapsed, another moved on) cannot
    put its token over the newer one."""
    store = FileRefreshStore(path, "cafe24")
    assert await store.swap("mallone", "r0", Stored("r1"))
    before = _text(path)
    assert not await store.swap("mallone", "r0", Stored("stale"))
    assert not await store.swap("unknown", "r0", Stored("x"))
    assert _text(path) == before


def test_a_refused_mark_holds_only_for_the_token_refused() -> None:
    """A seller who reinstalls writes a new refresh token: the old mark no longer applies."""
    marked = Stored("r1", refused="reinstall", refused_for=fingerprint("r1"))
    assert marked.refused_reason == "reinstall"
    reinstalled = Stored("r2", refused="reinstall", refused_for=fingerprint("r1"))
    assert reinstalled.refused_reason is None


@pytest.mark.parametrize("spec", ["env", "file:/somewhere/credentials.toml"])
def test_a_source_that_cannot_be_written_is_refused(spec: str) -> None:
    with pytest.raises(PermanentError, match="cannot be written"):
        refresh_store(spec, "cafe24")


def test_writable_sources_are_chosen_by_the_spec(path: Path) -> None:
    assert isinstance(refresh_store(f"file:{path}", "cafe24"), FileRefreshStore)
    aws = refresh_store("ssm:/lanes/@http://127.0.0.1:1", "cafe24")
    assert isinstance(aws, AwsRefreshStore)
    assert aws.where("mallone") == "refresh_token in ssm /lanes/cafe24/mallone"


@pytest.mark.slow
@pytest.mark.parametrize("service", ["secretsmanager", "ssm"])
async def test_aws_store_swaps_the_malls_secret(moto_server: MotoServer, service: str) -> None:
    """Secrets Manager or SSM: the mall's JSON secret takes the new token (its other keys
    kept), and a swap from a token no longer held writes nothing."""
    prefix = f"/lanes-{uuid.uuid4().hex[:8]}/"
    name = f"{prefix}cafe24/mallone"
    value = json.dumps({"refresh_token": "r0", "note": "kept"})
    async with aioboto3.Session().client(service, endpoint_url=moto_server.url) as client:
        if service == "ssm":
            await client.put_parameter(Name=name, Value=value, Type="SecureString")
        else:
            await client.create_secret(Name=name, SecretString=value)
    store = refresh_store(f"{service}:{prefix}@{moto_server.url}", "cafe24")
    assert await store.read("mallone") == Stored("r0")
    assert await store.swap("mallone", "r0", Stored("r1", previous_refresh_token="r0"))
    assert not await store.swap("mallone", "r0", Stored("stale"))
    assert await store.read("mallone") == Stored("r1", previous_refresh_token="r0")
    assert await store.read("absent") is None
