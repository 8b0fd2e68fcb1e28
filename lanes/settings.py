"""Process settings from `LANES_*` environment variables (pydantic-settings)."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from lanes.config import describe_validation_error
from lanes.errors import ConfigError

__all__ = ["ENV_PREFIX", "Settings", "load_settings", "unknown_variables"]

ENV_PREFIX = "LANES_"
_NESTED = "__"


class Settings(BaseSettings):
    """Everything a process reads from its environment.

    Market credentials are secrets: `LANES_CREDENTIALS__COUPANG__SECRET_KEY=...`
    sets `credentials["coupang"]["secret_key"]`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=_NESTED, extra="ignore", frozen=True
    )

    config: Path = Path("lanes.toml")
    redis_url: str = Field(default="redis://localhost:6379/0", pattern=r"^(redis|rediss|unix)://")
    sqs_endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    queue_prefix: str = Field(default="lanes", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    log_level: str = Field(default="info", pattern=r"^(?i:debug|info|warning|error)$")
    credentials: dict[str, dict[str, SecretStr]] = {}
    # The worker.
    concurrency: int = Field(default=32, ge=1, le=1000)
    visibility_timeout: int = Field(default=120, ge=10, le=43_200)
    # At least 1: a zero-second poll of an empty queue returns at once, so an idle
    # worker would spin on receives (and SQS bills each one).
    wait_seconds: int = Field(default=20, ge=1, le=20)
    grace_seconds: float = Field(default=20.0, ge=0, le=3600, allow_inf_nan=False)
    results_url: str = Field(default="file:results.jsonl", pattern=r"^(file:|sqs:|https?://)")
    # Seconds Redis keeps a side effect's record (and a job's attempt count). At most a
    # year: far past SQS's 14-day retention, and well inside what Redis takes as an EX
    # (a huge one is refused at every write, and every side-effect job would wait forever).
    idempotency_ttl: int = Field(default=7 * 24 * 3600, ge=60, le=366 * 24 * 3600)
    # After a side effect's request got no answer, how long the market may still be acting
    # on it: the job's resumed run (which checks what landed) waits that long.
    settle_seconds: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False)
    # The HTTP API (`lanes api`): `LANES_API_KEYS` is comma-separated or a JSON list.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # The largest request body it reads (413 beyond; 6 MiB, a Lambda's own limit), and how
    # long one POST /v1/jobs sends before answering with what it sent (API Gateway allows 29 s;
    # 0: one batch of 10 per request).
    api_max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024, le=1024**3)
    api_deadline: float = Field(default=20.0, ge=0, le=3600, allow_inf_nan=False)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)  # a JSONDecodeError is a ValueError: one-line error
            return [key.strip() for key in text.split(",") if key.strip()]
        return value

    # Base of the backoff between a low job's attempts across deliveries (doubling, 15 min cap).
    retry_backoff: float = Field(default=60.0, gt=0, le=900)
    # The daemon's /metrics and /healthz port (0: off) and address.
    metrics_port: int = Field(default=0, ge=0, le=65_535)
    metrics_host: str = "127.0.0.1"  # the daemon image sets 0.0.0.0: its probes come from outside
    # Messages a worker holds per lane to start them round robin across sellers
    # (docs/DESIGN.md rule 14); 0 starts them in the order received.
    seller_buffer: int = Field(default=100, ge=0, le=10_000)
    # `lanes schedule`: seconds one tick's jobs are spread over (SQS delays, at most 900).
    schedule_spread: int = Field(default=300, ge=0, le=900)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a wrong value raises one-line `ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "settings (LANES_*)")) from None
    except SettingsError as exc:
        # pydantic-settings parses a complex value (credentials) as JSON before validating.
        field = str(exc).partition('"')[2].partition('"')[0] or "a setting"
        raise ConfigError(
            f"settings (LANES_*): {field}: not valid JSON (or set each key as "
            f"{ENV_PREFIX}{field.upper()}{_NESTED}MARKET{_NESTED}KEY)"
        ) from None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per `LANES_*` variable that names no setting (a typo such as
    `LANES_CONCURENCY`), naming the closest known one."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    lines = []
    for variable in sorted(os.environ if environ is None else environ):
        head = variable.upper().split(_NESTED, 1)[0]
        if not head.startswith(ENV_PREFIX) or head in known:
            continue
        close = difflib.get_close_matches(head, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{variable} is not a lanes setting{hint}; it is ignored")
    return lines
