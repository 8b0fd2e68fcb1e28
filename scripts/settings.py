"""Every setting the `lanes` command reads: the API's (and so the worker's), and the
scheduler's; unknown `LANES_*` variables are told against this one set."""

from __future__ import annotations

from pydantic import Field

from scripts.api.settings import ApiSettings

__all__ = ["CliSettings"]


class CliSettings(ApiSettings):
    """What any `lanes` command, and the scheduler's Lambda handler, read."""

    # `lanes schedule`: seconds one tick's jobs are spread over (SQS delays, at most 900).
    schedule_spread: int = Field(default=300, ge=0, le=900)
