"""Market credentials per seller, from a pluggable source.

A market's table chooses where its secrets live with `options.credentials`:

- `"env"` (default): the settings, `LANES_CREDENTIALS__<MARKET>__<NAME>` for the
  market-wide value and `..__<SELLER>_<NAME>` (or `<seller>.<name>`) for one seller's;
- `"file:<path>"`: a JSON or TOML file `{market: {name: value, seller: {name: value}}}`;
- `"secretsmanager:<prefix>"` / `"ssm:<prefix>"`: AWS Secrets Manager or SSM
  Parameter Store, one JSON object of name -> value per seller, named
  `<prefix><market>/<seller>` (and `<prefix><market>` for the market-wide one), so a
  platform with thousands of sellers keeps them out of the environment.

A secret that signs or identifies a seller (Coupang's access and secret keys, Naver's
`account_id`) is read from that seller's own entry only, never from the market-wide
values or another seller's: a seller without it is a `PermanentError` naming the market,
the seller and where to set it, never a value. The application's own secrets (Naver's
client id and secret) are market-wide, as each market module declares (`Market.app_keys`).
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import aioboto3
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
from pydantic import SecretStr

from lanes.errors import ConfigError
from markets.errors import PermanentError, TransientError

__all__ = [
    "AwsSource",
    "CredentialSource",
    "Credentials",
    "FileSource",
    "SettingsSource",
    "check_spec",
    "credential_source",
    "held",
    "list_sellers",
    "sellers_holding",
]

Secrets = Mapping[str, SecretStr]
_AWS_TTL_S = 300.0  # how long a fetched secret is reused before asking AWS again
_AWS_MISSING = {"ResourceNotFoundException", "ParameterNotFound"}
_AWS_SERVICES = ("secretsmanager", "ssm")


class CredentialSource(Protocol):
    """Where secrets live; `seller=None` asks for the market-wide ones."""

    def where(self, market: str, seller: str | None, name: str) -> str:
        """Where a missing credential is to be set, for the error message."""
        ...

    async def secrets(self, market: str, seller: str | None) -> Secrets: ...


def _folded(values: Mapping[str, Any]) -> dict[str, SecretStr]:
    return {
        key.casefold(): value if isinstance(value, SecretStr) else SecretStr(str(value))
        for key, value in values.items()
        if not isinstance(value, Mapping)
    }


def _filled(value: Any) -> bool:
    if isinstance(value, Mapping):
        return False
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return bool(text.strip())


def held(source: CredentialSource, market: str, name: str, *, sellers: bool) -> bool | None:
    """Does `source` hold a non-empty `name` for `market` (or, with `sellers`, for some
    seller)? None when only asking AWS would tell: those are fetched per job."""
    if isinstance(source, SettingsSource | FileSource):
        return source.holds(market, name.casefold(), sellers=sellers)
    return None


def sellers_holding(
    source: CredentialSource, market: str, names: tuple[str, ...]
) -> dict[str, set[str]] | None:
    """Each seller that holds any of `names` in `source`, with the ones it holds (non-empty);
    None when only asking AWS would tell."""
    if isinstance(source, SettingsSource | FileSource):
        return source.seller_keys(market, tuple(name.casefold() for name in names))
    return None


class SettingsSource:
    """The settings' `credentials` (environment variables); keys match without case."""

    def where(self, market: str, seller: str | None, name: str) -> str:
        own = f"{seller}_".upper() if seller else ""
        return f"LANES_CREDENTIALS__{market.upper()}__{own}{name.upper()}"

    def __init__(self, credentials: Mapping[str, Mapping[str, SecretStr]]) -> None:
        self._markets = {
            market.casefold(): _folded(values) for market, values in credentials.items()
        }

    def holds(self, market: str, name: str, *, sellers: bool) -> bool:
        """A non-empty `name` market-wide or (with `sellers`) `<seller>_<name>`."""
        found = self._markets.get(market.casefold(), {})
        return any(
            (key == name or (sellers and key.endswith((f"_{name}", f".{name}")))) and _filled(value)
            for key, value in found.items()
        )

    def seller_keys(self, market: str, names: tuple[str, ...]) -> dict[str, set[str]]:
        """`<seller>_<name>` or `<seller>.<name>` keys, by seller."""
        found: dict[str, set[str]] = {}
        for key, value in self._markets.get(market.casefold(), {}).items():
            for name in names:
                if key.endswith((f"_{name}", f".{name}")) and _filled(value):
                    found.setdefault(key[: -len(name) - 1], set()).add(name)
        return found

    async def secrets(self, market: str, seller: str | None) -> Secrets:
        found = self._markets.get(market.casefold(), {})
        if seller is None:
            return found
        prefixes = (f"{seller}.".casefold(), f"{seller}_".casefold())
        return {
            key[len(prefix) :]: value
            for key, value in found.items()
            for prefix in prefixes
            if key.startswith(prefix)
        }


class FileSource:
    """A JSON or TOML file, read once: market tables, each seller a sub-table."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            text = path.read_bytes()
            raw = tomllib.loads(text.decode()) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read credentials: {type(exc).__name__}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: credentials must be an object of markets")
        self._markets = {
            str(market).casefold(): table
            for market, table in raw.items()
            if isinstance(table, dict)
        }

    def where(self, market: str, seller: str | None, name: str) -> str:
        return f"{name} in {self._path}, table {market}" + (f".{seller}" if seller else "")

    def holds(self, market: str, name: str, *, sellers: bool) -> bool:
        """A non-empty `name` in the market's table or (with `sellers`) a seller's."""
        table = self._markets.get(market.casefold(), {})
        tables = (
            [table, *(t for t in table.values() if isinstance(t, Mapping))] if sellers else [table]
        )
        return any(
            key.casefold() == name and _filled(value) for t in tables for key, value in t.items()
        )

    def seller_keys(self, market: str, names: tuple[str, ...]) -> dict[str, set[str]]:
        """Each seller's sub-table, with the `names` it fills."""
        table = self._markets.get(market.casefold(), {})
        return {
            str(seller): {
                key.casefold()
                for key, value in values.items()
                if key.casefold() in names and _filled(value)
            }
            for seller, values in table.items()
            if isinstance(values, Mapping)
        }

    def sellers(self, market: str) -> list[str]:
        """The sellers with a table of their own under the market's."""
        return list(self.seller_keys(market, ()))

    async def secrets(self, market: str, seller: str | None) -> Secrets:
        table = self._markets.get(market.casefold(), {})
        if seller is not None:
            table = next(
                (value for key, value in table.items() if key.casefold() == seller.casefold()), {}
            )
            if not isinstance(table, Mapping):
                return {}
        return _folded(table)


class AwsSource:
    """AWS Secrets Manager (`service="secretsmanager"`) or SSM Parameter Store (`"ssm"`):
    each secret a JSON object; fetched secrets are reused for a few minutes per process."""

    def __init__(self, service: str, prefix: str, endpoint_url: str | None = None) -> None:
        self._service = service
        self._prefix = prefix
        self._endpoint_url = endpoint_url
        self._session = aioboto3.Session()
        self._cache: dict[str, tuple[float, Secrets]] = {}

    def _name(self, market: str, seller: str | None) -> str:
        return f"{self._prefix}{market}" + (f"/{seller}" if seller is not None else "")

    def where(self, market: str, seller: str | None, name: str) -> str:
        return f"{self._service} {self._name(market, seller)}"

    async def secrets(self, market: str, seller: str | None) -> Secrets:
        name = self._name(market, seller)
        cached = self._cache.get(name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        text = await self._fetch(name, market)
        try:
            values = json.loads(text) if text is not None else {}
        except ValueError:
            raise PermanentError(f"secret {name} is not a JSON object", market=market) from None
        found = _folded(values) if isinstance(values, dict) else {}
        self._cache[name] = (time.monotonic() + _AWS_TTL_S, found)
        return found

    async def sellers(self, market: str) -> list[str]:
        """The sellers with a secret (parameter) `<prefix><market>/<seller>` of their own."""
        base = self._name(market, None) + "/"
        try:
            async with self._session.client(
                self._service, endpoint_url=self._endpoint_url
            ) as client:
                if self._service == "ssm":
                    pages = client.get_paginator("get_parameters_by_path").paginate(
                        Path=base.rstrip("/"), Recursive=False
                    )
                    names = [p["Name"] async for page in pages for p in page["Parameters"]]
                else:
                    pages = client.get_paginator("list_secrets").paginate(
                        Filters=[{"Key": "name", "Values": [base]}]
                    )
                    names = [s["Name"] async for page in pages for s in page["SecretList"]]
        except (ClientError, BotoCoreError) as exc:
            raise ConfigError(
                f"{self._service}: cannot list the sellers under {base}: {type(exc).__name__}"
            ) from exc
        found = (name.removeprefix(base) for name in names if name.startswith(base))
        return sorted(seller for seller in found if seller and "/" not in seller)

    async def _fetch(self, name: str, market: str) -> str | None:
        try:
            async with self._session.client(
                self._service, endpoint_url=self._endpoint_url
            ) as client:
                if self._service == "ssm":
                    answer = await client.get_parameter(Name=name, WithDecryption=True)
                    return str(answer["Parameter"]["Value"])
                answer = await client.get_secret_value(SecretId=name)
                return str(answer["SecretString"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _AWS_MISSING:
                return None
            raise TransientError(
                f"{self._service} refused reading {name}: {type(exc).__name__}", market=market
            ) from exc
        except BotoCoreError as exc:
            raise TransientError(
                f"{self._service} unreachable: {type(exc).__name__}", market=market
            ) from exc


async def list_sellers(source: CredentialSource, market: str) -> list[str]:
    """Every seller `source` holds credentials of for `market` (the scheduler's sellers).
    Environment variables fold case and `<seller>_<name>` cannot be told from a name with
    an underscore, so the env source lists none: a `ConfigError` saying what to use."""
    if isinstance(source, FileSource):
        return source.sellers(market)
    if isinstance(source, AwsSource):
        return await source.sellers(market)
    raise ConfigError(
        f"market {market}: credentials from the environment cannot list sellers; give a "
        "seller list file, or keep credentials in file:, secretsmanager: or ssm:"
    )


def check_spec(spec: str) -> tuple[str, str]:
    """(kind, rest) of an `options.credentials` value; a wrong one is a one-line
    `ConfigError`."""
    kind, _, rest = spec.partition(":")
    if (kind == "env" and not rest) or (kind == "file" and rest) or kind in _AWS_SERVICES:
        return kind, rest
    raise ConfigError(
        f"credentials: {spec!r} is not a source: use env, file:<path>, secretsmanager:<prefix> "
        "or ssm:<prefix> (add @<endpoint url> for a local AWS)"
    )


def credential_source(
    spec: str, settings_credentials: Mapping[str, Mapping[str, SecretStr]]
) -> CredentialSource:
    """The source `options.credentials` names."""
    kind, rest = check_spec(spec)
    if kind == "env":
        return SettingsSource(settings_credentials)
    if kind == "file":
        return FileSource(Path(rest))
    prefix, _, endpoint = rest.partition("@")
    return AwsSource(kind, prefix, endpoint or None)


class Credentials:
    """One market's secrets; `get` raises a `PermanentError` naming what is missing."""

    def __init__(self, market: str, source: CredentialSource) -> None:
        self.market = market
        self._source = source

    async def get(self, name: str, seller: str | None = None) -> SecretStr:
        """The seller's own `name` (with `seller`: never the market-wide or another's value,
        for a secret that signs or identifies the seller), else the market-wide one."""
        found = (await self._source.secrets(self.market, seller or None)).get(name.casefold())
        if found is not None:
            return found
        whose = f"seller {seller!r}" if seller else "the market"
        where = self._source.where(self.market, seller or None, name)
        raise PermanentError(
            f"no credential {name!r} for {whose} (set {where})", market=self.market
        )
