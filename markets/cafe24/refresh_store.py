"""Where each Cafe24 mall's rotating refresh token lives durably: the seller's credential source.

Cafe24 hands out a new refresh token on every refresh and the old one stops working, so
the newest one must be written somewhere that outlives Redis and every worker before it is
relied on. The store is the truth; Redis only caches access tokens. Each mall's entry holds
`refresh_token`, the `previous_refresh_token` it replaced, and, once Cafe24 refused it,
`refused` (the reason) with `refused_for` (the fingerprint of the token refused: a seller
who reinstalls the app writes a new `refresh_token` and the mark no longer applies).

`swap(mall, expected, new)` writes only while the entry still holds `expected` (a
compare-and-swap: a writer that lost the race, or whose lock expired, cannot put an older
token back). Sources:

- `file:<path>.json`: the credentials file itself, rewritten atomically (a temporary file,
  fsync, rename) under an exclusive `flock` on `<path>.lock`; a TOML file cannot be written;
- `secretsmanager:` / `ssm:`: the seller's JSON secret, read and put back (the mall's Redis
  lock is what keeps two writers apart: neither service has a compare-and-swap);
- `env`: cannot be written, so Cafe24 refuses it at the first refresh with one clear line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aioboto3
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from lanes.errors import ConfigError
from markets.credentials import check_spec
from markets.errors import PermanentError, TransientError

__all__ = [
    "AwsRefreshStore",
    "FileRefreshStore",
    "RefreshStore",
    "Stored",
    "check_writable",
    "fingerprint",
    "refresh_store",
]

_FIELDS = ("refresh_token", "previous_refresh_token", "refused", "refused_for")


def fingerprint(token: str) -> str:
    """A short digest naming a refresh token without holding it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Stored:
    """One mall's durable entry."""

    refresh_token: str
    previous_refresh_token: str | None = None
    refused: str | None = None
    refused_for: str | None = None

    @property
    def refused_reason(self) -> str | None:
        """Why Cafe24 refused the current token, if it did (a mark for an older token is
        void: the seller has since put a new one in)."""
        if self.refused and self.refused_for == fingerprint(self.refresh_token):
            return self.refused
        return None

    def fields(self) -> dict[str, str]:
        return {name: value for name in _FIELDS if (value := getattr(self, name)) is not None}

    @classmethod
    def parse(cls, entry: Any) -> Stored | None:
        if not isinstance(entry, dict):
            return None
        folded = {str(key).casefold(): value for key, value in entry.items()}
        token = folded.get("refresh_token")
        if not isinstance(token, str) or not token.strip():
            return None
        return cls(**{name: str(folded[name]) for name in _FIELDS if folded.get(name)})


class RefreshStore(Protocol):
    def where(self, mall: str) -> str:
        """Where the mall's refresh token is to be set, for error messages."""
        ...

    async def read(self, mall: str) -> Stored | None: ...

    async def swap(self, mall: str, expected: str, new: Stored) -> bool:
        """Write `new` if the mall's entry still holds `expected`; False when it does not."""
        ...


def _entry(table: Any, mall: str) -> tuple[str, Any]:
    """The mall's key (its own spelling, matched without case) and entry in a market table."""
    if isinstance(table, dict):
        for key, value in table.items():
            if str(key).casefold() == mall.casefold():
                return str(key), value
    return mall, None


class FileRefreshStore:
    """The JSON credentials file: `{market: {mall: {refresh_token, ...}}}`."""

    def __init__(self, path: Path, market: str) -> None:
        self._path = path
        self._market = market
        self._lock = path.with_name(path.name + ".lock")

    def where(self, mall: str) -> str:
        return f"refresh_token in {self._path}, table {self._market}.{mall}"

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self._path.read_bytes())
        except (OSError, ValueError) as exc:
            raise PermanentError(
                f"{self._path}: cannot read refresh tokens: {type(exc).__name__}",
                market=self._market,
            ) from None
        if not isinstance(raw, dict):
            raise PermanentError(f"{self._path}: not an object of markets", market=self._market)
        return raw

    @contextlib.contextmanager
    def _locked(self, kind: int) -> Any:
        with open(self._lock, "a+b") as handle:
            fcntl.flock(handle, kind)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _table(self, raw: dict[str, Any]) -> dict[str, Any]:
        _key, table = _entry(raw, self._market)
        return table if isinstance(table, dict) else {}

    def _read(self, mall: str) -> Stored | None:
        with self._locked(fcntl.LOCK_SH):
            return Stored.parse(_entry(self._table(self._load()), mall)[1])

    def _swap(self, mall: str, expected: str, new: Stored) -> bool:
        with self._locked(fcntl.LOCK_EX):
            raw = self._load()
            market_key, table = _entry(raw, self._market)
            table = dict(table) if isinstance(table, dict) else {}
            mall_key, entry = _entry(table, mall)
            current = Stored.parse(entry)
            if current is None or current.refresh_token != expected:
                return False
            kept = {
                key: value for key, value in entry.items() if str(key).casefold() not in _FIELDS
            }
            table[mall_key] = {**kept, **new.fields()}
            raw[market_key] = table
            self._write(raw)
            return True

    def _write(self, raw: dict[str, Any]) -> None:
        # Durable before it is relied on: the new file is complete on disk, then renamed
        # over the old one, then the rename itself is flushed.
        directory = self._path.parent
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{self._path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(raw, out, indent=2, ensure_ascii=False)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, self._path.stat().st_mode & 0o777)
            os.replace(temporary, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        folder = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    async def read(self, mall: str) -> Stored | None:
        return await asyncio.to_thread(self._read, mall)

    async def swap(self, mall: str, expected: str, new: Stored) -> bool:
        try:
            return await asyncio.to_thread(self._swap, mall, expected, new)
        except OSError as exc:
            raise TransientError(
                f"{self._path}: cannot write the new refresh token: {type(exc).__name__}",
                market=self._market,
            ) from exc


class AwsRefreshStore:
    """Secrets Manager or SSM Parameter Store: the mall's secret `<prefix><market>/<mall>`,
    one JSON object, read fresh (never from a cache) and put back whole."""

    def __init__(
        self, service: str, prefix: str, market: str, endpoint_url: str | None = None
    ) -> None:
        self._service = service
        self._prefix = prefix
        self._market = market
        self._endpoint_url = endpoint_url
        self._session = aioboto3.Session()

    def _name(self, mall: str) -> str:
        return f"{self._prefix}{self._market}/{mall}"

    def where(self, mall: str) -> str:
        return f"refresh_token in {self._service} {self._name(mall)}"

    async def _get(self, client: Any, name: str) -> dict[str, Any]:
        try:
            if self._service == "ssm":
                answer = await client.get_parameter(Name=name, WithDecryption=True)
                text = str(answer["Parameter"]["Value"])
            else:
                text = str((await client.get_secret_value(SecretId=name))["SecretString"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "ResourceNotFoundException",
                "ParameterNotFound",
            ):
                return {}
            raise
        values = json.loads(text)
        return values if isinstance(values, dict) else {}

    async def _put(self, client: Any, name: str, values: dict[str, Any]) -> None:
        text = json.dumps(values)
        if self._service == "ssm":
            await client.put_parameter(Name=name, Value=text, Type="SecureString", Overwrite=True)
        else:
            await client.put_secret_value(SecretId=name, SecretString=text)

    async def read(self, mall: str) -> Stored | None:
        try:
            async with self._session.client(
                self._service, endpoint_url=self._endpoint_url
            ) as client:
                return Stored.parse(await self._get(client, self._name(mall)))
        except (ClientError, BotoCoreError, ValueError) as exc:
            raise TransientError(
                f"{self._service}: cannot read {self._name(mall)}: {type(exc).__name__}",
                market=self._market,
            ) from exc

    async def swap(self, mall: str, expected: str, new: Stored) -> bool:
        name = self._name(mall)
        try:
            async with self._session.client(
                self._service, endpoint_url=self._endpoint_url
            ) as client:
                values = await self._get(client, name)
                current = Stored.parse(values)
                if current is None or current.refresh_token != expected:
                    return False
                kept = {k: v for k, v in values.items() if str(k).casefold() not in _FIELDS}
                await self._put(client, name, {**kept, **new.fields()})
                return True
        except (ClientError, BotoCoreError, ValueError) as exc:
            raise TransientError(
                f"{self._service}: cannot write {name}: {type(exc).__name__}",
                market=self._market,
            ) from exc


def _unwritable(spec: str) -> str | None:
    """Why `spec` cannot hold a rotating token, or None when it can."""
    kind, rest = check_spec(spec)
    if (kind == "file" and rest.endswith(".json")) or kind in ("secretsmanager", "ssm"):
        return None
    return (
        f"{spec!r} cannot be written, and Cafe24's refresh token changes on every refresh: "
        "use file:<path>.json, secretsmanager:<prefix> or ssm:<prefix>"
    )


def check_writable(options: Mapping[str, str]) -> None:
    """At load: `options.credentials` must be a source the new refresh tokens can be written
    to (a one-line `ConfigError` otherwise)."""
    why = _unwritable(options.get("credentials", "env"))
    if why is not None:
        raise ConfigError(f"credentials: {why}")


def refresh_store(spec: str, market: str) -> RefreshStore:
    """The writable store behind `options.credentials`; a `PermanentError` for one that
    cannot hold a rotating token (the environment, a TOML file)."""
    why = _unwritable(spec)
    if why is not None:
        raise PermanentError(f"options.credentials {why}", market=market)
    kind, rest = check_spec(spec)
    if kind == "file":
        return FileRefreshStore(Path(rest), market)
    prefix, _, endpoint = rest.partition("@")
    return AwsRefreshStore(kind, prefix, market, endpoint or None)
