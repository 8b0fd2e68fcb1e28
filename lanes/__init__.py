"""lanes: a shared, lane-aware request budget for marketplace APIs, held in Redis."""

from __future__ import annotations

from lanes.budget import Admission, Budget, Check
from lanes.config import Bucket, GroupConfig, Limits, Scope, Window
from lanes.errors import BudgetTimeout, BudgetUnavailable, ConfigError, LanesError
from lanes.limiter import Limiter
from lanes.logs import configure_logging, redact_secrets
from lanes.pauses import Cooldown, Pauses
from lanes.policy import DEFAULT_POLICIES, Lane, LanePolicies, LanePolicy
from lanes.resource import AsyncResource
from lanes.settings import Settings, load_settings
from lanes.store import RedisStore
from lanes.usage import BudgetUsage, Usage

__all__ = [
    "DEFAULT_POLICIES",
    "Admission",
    "AsyncResource",
    "Bucket",
    "Budget",
    "BudgetTimeout",
    "BudgetUnavailable",
    "BudgetUsage",
    "Check",
    "ConfigError",
    "Cooldown",
    "GroupConfig",
    "Lane",
    "LanePolicies",
    "LanePolicy",
    "LanesError",
    "Limiter",
    "Limits",
    "Pauses",
    "RedisStore",
    "Scope",
    "Settings",
    "Usage",
    "Window",
    "configure_logging",
    "load_settings",
    "redact_secrets",
]
