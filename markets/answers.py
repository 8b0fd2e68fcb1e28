"""Checks on the shape of a market's 2xx answers, so a job fails clearly, not with a KeyError."""

from __future__ import annotations

from typing import Any

from markets.errors import PermanentError

__all__ = ["expect_dict", "expect_list"]


def expect_dict(answer: Any, market: str, endpoint: str, key: str | None = None) -> dict[str, Any]:
    """`answer` (or `answer[key]`) as a dict, or a `PermanentError` naming what was wrong."""
    value = answer.get(key) if key is not None and isinstance(answer, dict) else answer
    if not isinstance(value, dict):
        where = f"'{key}' of the answer" if key else "the answer"
        raise PermanentError(f"{where} is not an object", market=market, endpoint=endpoint)
    return value


def expect_list(answer: Any, market: str, endpoint: str, key: str) -> list[Any]:
    """`answer[key]` as a list (absent or null counts as empty)."""
    value = answer.get(key) if isinstance(answer, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise PermanentError(
            f"'{key}' of the answer is not a list", market=market, endpoint=endpoint
        )
    return value
