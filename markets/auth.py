"""What every auth scheme offers the client: headers for one request, and a way to go stale."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from lanes.policy import Lane

__all__ = ["Auth", "NoAuth", "Signer", "bearer"]

# (method, path as sent, query string as sent without "?") -> headers to add
Signer = Callable[[str, str, str], dict[str, str]]


class Auth(Protocol):
    async def prepare(self, seller: str | None, lane: Lane, deadline: float | None) -> Signer:
        """Get what signing needs (a token may be fetched here); runs before budget is taken."""
        ...

    async def invalidate(self, seller: str | None) -> bool:
        """Forget `seller`'s credential the market refused (401); True when a fresh one
        may help."""
        ...


def _no_headers(method: str, path: str, query: str) -> dict[str, str]:
    return {}


class NoAuth:
    """A market that needs no authentication."""

    async def prepare(self, seller: str | None, lane: Lane, deadline: float | None) -> Signer:
        return _no_headers

    async def invalidate(self, seller: str | None) -> bool:
        return False


def bearer(token: str, extra: Mapping[str, str] | None = None) -> Signer:
    """The same `Authorization: Bearer <token>` (and `extra`) headers on every request."""
    headers = {"Authorization": f"Bearer {token}", **(extra or {})}

    def signer(method: str, path: str, query: str) -> dict[str, str]:
        return headers

    return signer
