"""The HTTP API's settings (`LANES_API_*`), beside the worker's: its runtime is the
worker's (`worker.runtime.Runtime`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from worker.settings import WorkerSettings

__all__ = ["ApiSettings"]


class ApiSettings(WorkerSettings):
    """What `lanes api` and its Lambda handler read."""

    # `LANES_API_KEYS` is comma-separated or a JSON list.
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
