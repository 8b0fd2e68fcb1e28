"""Process settings from `LANES_*` environment variables (pydantic-settings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lanes.config import describe_validation_error
from lanes.errors import ConfigError

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Everything a process reads from its environment.

    Market credentials are secrets: `LANES_CREDENTIALS__COUPANG__SECRET_KEY=...`
    sets `credentials["coupang"]["secret_key"]`.
    """

    model_config = SettingsConfigDict(
        env_prefix="LANES_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    config: Path = Path("lanes.toml")
    redis_url: str = Field(default="redis://localhost:6379/0", pattern=r"^(redis|rediss|unix)://")
    sqs_endpoint_url: str | None = None
    queue_prefix: str = Field(default="lanes", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    log_level: str = Field(default="info", pattern=r"^(?i:debug|info|warning|error)$")
    credentials: dict[str, dict[str, SecretStr]] = {}
    # The worker.
    concurrency: int = Field(default=32, ge=1, le=1000)
    visibility_timeout: int = Field(default=120, ge=10, le=43_200)
    wait_seconds: int = Field(default=20, ge=0, le=20)
    grace_seconds: float = Field(default=20.0, ge=0)
    results_url: str = Field(default="file:results.jsonl", pattern=r"^(file:|sqs:|https?://)")
    idempotency_ttl: int = Field(default=7 * 24 * 3600, ge=60)
    # The HTTP API (`lanes api`): `LANES_API_KEYS` is comma-separated or a JSON list.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()

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
    metrics_host: str = "0.0.0.0"  # a container's probes come from outside


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a wrong value raises one-line `ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "settings (LANES_*)")) from None
