"""The project's own errors: every backend failure is wrapped in one of these."""

from __future__ import annotations

__all__ = ["BudgetTimeout", "BudgetUnavailable", "ConfigError", "LanesError"]


class LanesError(Exception):
    """Base of every error lanes raises on purpose."""


class ConfigError(LanesError):
    """A setting or the TOML file is wrong; the message is one line naming the field."""


class BudgetUnavailable(LanesError):
    """Redis could not be reached: nothing is admitted (fail closed)."""


class BudgetTimeout(LanesError):
    """No admission before the caller's deadline; `retry_after` says when to ask again."""

    def __init__(self, budget: str, retry_after: float) -> None:
        super().__init__(f"budget {budget} has no room before the deadline")
        self.budget = budget
        self.retry_after = retry_after
