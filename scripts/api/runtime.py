"""What the API's routes share: the runtime the app holds open (the worker's connections
plus the API's own parts), how a route gets it, and the 404 a route raises."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from markets import Markets
from markets.config import Config
from scripts.api.jobs import Sender, SendLog
from scripts.api.settings import ApiSettings
from scripts.tools.validate import JobValidator
from worker.idempotency import IdempotencyGuard
from worker.runtime import Connections

__all__ = ["ApiRuntime", "NotFound", "Runtime", "check_market", "runtime_of"]

_CLAIM_SECONDS = 30.0


class ApiRuntime(Connections):
    """What the app holds open while it serves: the worker's connections (`Connections`),
    plus the markets, the checks and the sender."""

    def __init__(self, settings: ApiSettings, config: Config) -> None:
        super().__init__(settings, config)
        self.markets = Markets(config, settings, self.limiter, self.store.client)
        self.validators = {name: JobValidator(config, name) for name in config.markets}
        self.guard = IdempotencyGuard(
            self.store.client, ttl=settings.idempotency_ttl, claim_seconds=_CLAIM_SECONDS
        )
        self.send_log = SendLog(self.store.client, ttl=settings.idempotency_ttl)
        self.sender = Sender(self.sqs, settings.queue_prefix, self.tracker, settings.api_deadline)
        self._stack.push_async_callback(self.markets.aclose)


def runtime_of(request: Request) -> ApiRuntime:
    runtime: ApiRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[ApiRuntime, Depends(runtime_of)]


class NotFound(LookupError):
    """404: the job or market the request names does not exist; `field` names the parameter."""

    def __init__(self, text: str, *, field: str) -> None:
        super().__init__(text)
        self.field = field


def check_market(runtime: ApiRuntime, market: str) -> None:
    """`NotFound` (404, naming the field) for a market the config does not name."""
    if market not in runtime.config.markets:
        raise NotFound(f"unknown market {market!r}", field="market")
