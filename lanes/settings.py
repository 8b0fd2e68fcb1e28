"""Process settings from `LANES_*` environment variables (pydantic-settings): the
fields every process reads, and how any kind of settings is loaded and checked."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from lanes.config import describe_validation_error
from lanes.errors import ConfigError

__all__ = ["ENV_PREFIX", "Settings", "load_settings", "unknown_variables"]

ENV_PREFIX = "LANES_"
_NESTED = "__"


class Settings(BaseSettings):
    """What every process reads from its environment: the TOML file, Redis, the log
    level and the market credentials. Each kind of process adds its own fields in a
    subclass (`worker.settings.WorkerSettings`: SQS and the worker;
    `scripts.api.settings.ApiSettings`; `scripts.settings.CliSettings`: all of them).

    Market credentials are secrets: `LANES_CREDENTIALS__COUPANG__SECRET_KEY=...`
    sets `credentials["coupang"]["secret_key"]`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=_NESTED, extra="ignore", frozen=True
    )

    config: Path = Path("lanes.toml")
    redis_url: str = Field(default="redis://localhost:6379/0", pattern=r"^(redis|rediss|unix)://")
    log_level: str = Field(default="info", pattern=r"^(?i:debug|info|warning|error)$")
    credentials: dict[str, dict[str, SecretStr]] = {}


S = TypeVar("S", bound=Settings)


def load_settings(kind: type[S], **overrides: object) -> S:
    """`kind` of settings from the environment; a wrong value raises one-line `ConfigError`."""
    try:
        return kind(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "settings (LANES_*)")) from None
    except SettingsError as exc:
        # pydantic-settings parses a complex value (credentials) as JSON before validating.
        field = str(exc).partition('"')[2].partition('"')[0] or "a setting"
        raise ConfigError(
            f"settings (LANES_*): {field}: not valid JSON (or set each key as "
            f"{ENV_PREFIX}{field.upper()}{_NESTED}MARKET{_NESTED}KEY)"
        ) from None


def unknown_variables(kind: type[Settings], environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per `LANES_*` variable that names no setting of `kind` (a typo such as
    `LANES_CONCURENCY`), naming the closest known one."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in kind.model_fields}
    lines = []
    for variable in sorted(os.environ if environ is None else environ):
        head = variable.upper().split(_NESTED, 1)[0]
        if not head.startswith(ENV_PREFIX) or head in known:
            continue
        close = difflib.get_close_matches(head, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{variable} is not a lanes setting{hint}; it is ignored")
    return lines
