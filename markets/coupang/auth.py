"""Coupang's CEA HMAC signature, exactly as the Open API defines it.

signature = lowercase hex HMAC-SHA256(secret key, signed-date + METHOD + path + query),
where the query is the string as sent (no `?`), the body unsigned, and
signed-date is UTC `yyMMdd'T'HHmmss'Z'`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime

from lanes.policy import Lane
from markets.auth import Signer
from markets.credentials import Credentials
from markets.errors import PermanentError

__all__ = ["CoupangAuth", "authorization", "sign", "signed_date"]

ALGORITHM = "HmacSHA256"


def signed_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%y%m%dT%H%M%SZ")


def sign(secret_key: str, date: str, method: str, path: str, query: str) -> str:
    message = f"{date}{method.upper()}{path}{query}"
    return hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()


def authorization(access_key: str, date: str, signature: str) -> str:
    return (
        f"CEA algorithm={ALGORITHM}, access-key={access_key}, "
        f"signed-date={date}, signature={signature}"
    )


class CoupangAuth:
    """Signs each request with the seller's own keys at sending time: a vendor's keys are
    its own, so a seller without them is refused, never signed with other keys."""

    def __init__(
        self, credentials: Credentials, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._credentials = credentials
        self._clock = clock or (lambda: datetime.now(UTC))

    async def prepare(self, seller: str | None, lane: Lane, deadline: float | None) -> Signer:
        # Looked up before budget is taken: missing keys fail without spending any.
        if not seller:
            raise PermanentError(
                "a Coupang job needs its seller (the vendorId whose keys sign it)",
                market=self._credentials.market,
            )
        access_key = (await self._credentials.get("access_key", seller)).get_secret_value()
        secret_key = (await self._credentials.get("secret_key", seller)).get_secret_value()

        def signer(method: str, path: str, query: str) -> dict[str, str]:
            date = signed_date(self._clock())
            signature = sign(secret_key, date, method, path, query)
            headers = {"Authorization": authorization(access_key, date, signature)}
            if seller:
                headers["X-Requested-By"] = seller
            return headers

        return signer

    async def invalidate(self, seller: str | None) -> bool:
        """A signature cannot go stale the way a token does: a 401 is final."""
        return False
