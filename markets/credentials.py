"""Market credentials from settings, market-wide or per seller.

`settings.credentials[market][name]` holds a market-wide secret
(`LANES_CREDENTIALS__COUPANG__SECRET_KEY`). A seller may have its own:
`<seller>.<name>` or `<seller>_<name>` (`LANES_CREDENTIALS__COUPANG__A00012345_SECRET_KEY`),
which wins over the market-wide one. Keys are matched without regard to case,
because environment variables arrive lower-cased.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from markets.errors import PermanentError

__all__ = ["Credentials"]


class Credentials:
    """Looks up one market's secrets; a missing one is a `PermanentError` naming the variable."""

    def __init__(self, market: str, secrets: Mapping[str, SecretStr]) -> None:
        self._market = market
        self._secrets = {key.casefold(): value for key, value in secrets.items()}

    def get(self, name: str, seller: str | None = None) -> SecretStr:
        candidates = [f"{seller}.{name}", f"{seller}_{name}"] if seller else []
        for key in [*candidates, name]:
            found = self._secrets.get(key.casefold())
            if found is not None:
                return found
        variable = f"LANES_CREDENTIALS__{self._market.upper()}__{name.upper()}"
        raise PermanentError(
            f"no credential {name!r} for market {self._market!r} (set {variable})",
            market=self._market,
        )
