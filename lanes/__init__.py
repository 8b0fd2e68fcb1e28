"""lanes: a shared, lane-aware request budget for marketplace APIs, held in Redis."""

from __future__ import annotations

from lanes.budget import Admission, Budget, Check
from lanes.config import (
    Config,
    EndpointConfig,
    GroupConfig,
    MarketConfig,
    Scope,
    Window,
    parse_config,
    read_toml,
)
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
    "Budget",
    "BudgetTimeout",
    "BudgetUnavailable",
    "BudgetUsage",
    "Check",
    "Config",
    "ConfigError",
    "Cooldown",
    "EndpointConfig",
    "GroupConfig",
    "Lane",
    "LanePolicies",
    "LanePolicy",
    "LanesError",
    "Limiter",
    "MarketConfig",
    "Pauses",
    "RedisStore",
    "Scope",
    "Settings",
    "Usage",
    "Window",
    "configure_logging",
    "load_settings",
    "parse_config",
    "read_toml",
    "redact_secrets",
]
