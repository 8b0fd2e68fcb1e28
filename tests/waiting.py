"""Waiting in tests for a state that no event announces."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["soon"]


async def soon(condition: Callable[[], object]) -> bool:
    """Whether `condition` holds within a few seconds (a subscription's messages, or a
    round trip's answer, arrive on their own task; there is no event to wait for)."""
    for _ in range(500):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False
