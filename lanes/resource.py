"""One base for every connection owner: `async with`, and an `aclose()` safe to call twice."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncResource"]


class AsyncResource:
    """Owns one connection (Redis pool, SQS client, HTTP session, file).

    Subclasses put their teardown in `_close()`; `aclose()` runs it once, whatever
    the number of callers, and `closed` tells code that may race with shutdown
    (a poller, a sink) that the connection is gone.
    """

    _closed: bool = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    async def _close(self) -> None:
        """The subclass's teardown, run by the first `aclose()`."""
