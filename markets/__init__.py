"""Market clients, auth schemes, endpoint catalogues, jobs and local simulators."""

from __future__ import annotations

from markets.catalogue import load_config
from markets.client import Call, MarketClient
from markets.errors import (
    AttemptsExhausted,
    MarketError,
    NotSent,
    OutcomeUnknown,
    PartialFailure,
    PermanentError,
    RateLimited,
    RetryLater,
    TransientError,
)
from markets.request import JobRequest, JobResult
from markets.retry import Backoff
from markets.service import JOB_KINDS, LANE_POLICY, Markets, missing_credentials

__all__ = [
    "JOB_KINDS",
    "LANE_POLICY",
    "AttemptsExhausted",
    "Backoff",
    "Call",
    "JobRequest",
    "JobResult",
    "MarketClient",
    "MarketError",
    "Markets",
    "NotSent",
    "OutcomeUnknown",
    "PartialFailure",
    "PermanentError",
    "RateLimited",
    "RetryLater",
    "TransientError",
    "load_config",
    "missing_credentials",
]
