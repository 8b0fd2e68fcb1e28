"""Checking a job before it is sent: the envelope, its market and what the market offers."""

from __future__ import annotations

from types import TracebackType

from lanes.config import Config
from lanes.limiter import Limiter
from lanes.settings import Settings
from lanes.store import RedisStore
from markets import JobRequest, Markets, PermanentError
from worker.envelope import Envelope, PoisonMessage, parse_envelope

__all__ = ["BadJob", "JobValidator"]


class BadJob(ValueError):
    """A job that would be dead-lettered at once; the message is one line."""


class JobValidator:
    """Validates message bodies for one market without any I/O.

    `Markets.check` needs a limiter and a Redis client to exist, never to be
    used: the client below opens no connection unless a command is sent.
    """

    def __init__(self, config: Config, settings: Settings, market: str) -> None:
        config.market(market)  # an unknown market is a ConfigError, before any line
        self.market = market
        self._store = RedisStore(settings.redis_url)
        limiter = Limiter(self._store.client, config.lanes)
        self._markets = Markets(config, settings, limiter, self._store.client)

    async def __aenter__(self) -> JobValidator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._markets.aclose()
        await self._store.aclose()

    def check_envelope(self, envelope: Envelope) -> Envelope:
        """The envelope if the worker could run it; else `BadJob` saying why."""
        if envelope.market != self.market:
            raise BadJob(f"market is {envelope.market!r}, not {self.market!r}")
        request = JobRequest(
            kind=envelope.kind,
            market=envelope.market,
            seller=envelope.seller,
            payload=envelope.payload,
            id=envelope.id,
        )
        try:
            self._markets.check(request)
        except PermanentError as exc:
            raise BadJob(str(exc)) from None
        return envelope

    def check_body(self, body: str) -> Envelope:
        """Parse and check one message body (a JSON object)."""
        try:
            envelope = parse_envelope(body)
        except PoisonMessage as exc:
            raise BadJob(exc.reason) from None
        return self.check_envelope(envelope)
