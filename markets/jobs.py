"""What a job is: a payload model, a coroutine, whether it changes anything; and `call`.

A job talks to its market only through `JobContext.call`, which takes budget in
the job's lane and retries each request by the lane's policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lanes.policy import Lane
from markets.client import Call, MarketClient
from markets.retry import Backoff, retry_in_lane

__all__ = ["CALL", "CallPayload", "JobContext", "JobSpec", "Payload"]


class Payload(BaseModel):
    """Base of every job payload: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@dataclass
class JobContext:
    """One job run: its market client, seller, lane, deadline and attempt policy."""

    client: MarketClient
    seller: str
    lane: Lane
    deadline: float | None
    max_attempts: int | None
    backoff: Backoff
    calls: int = 0

    def _sent(self) -> None:
        self.calls += 1

    async def call(
        self,
        endpoint: str,
        *,
        path: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """One request with the lane's retries; returns the 2xx answer's body."""
        request = Call(endpoint, path=path or {}, params=params or {}, json=json)

        async def attempt() -> Any:
            return await self.client.send(
                request, self.lane, seller=self.seller, deadline=self.deadline, on_sent=self._sent
            )

        context = {
            "market": self.client.name,
            "endpoint": endpoint,
            "lane": self.lane.value,
            "seller": self.seller,
        }
        return await retry_in_lane(
            attempt,
            max_attempts=self.max_attempts,
            deadline=self.deadline,
            backoff=self.backoff,
            context=context,
        )


@dataclass(frozen=True)
class JobSpec:
    """A job kind for one catalogue: its payload model, what it runs, what it touches."""

    model: type[Payload]
    run: Callable[[JobContext, Any], Awaitable[Any]]
    endpoints: tuple[str, ...]
    side_effect: bool


class CallPayload(Payload):
    """`call`: `endpoint` of the market, `params` as the query, `json` as the body, `path` fills
    the path's placeholders (`{vendorId}` and `{seller}` default to the seller)."""

    endpoint: str = Field(min_length=1)
    params: dict[str, str | int | float | bool | list[str | int | float]] = {}
    body: Any = Field(default=None, alias="json")
    path: dict[str, str | int] = {}


async def _call(context: JobContext, payload: CallPayload) -> Any:
    return await context.call(
        payload.endpoint, path=payload.path, params=payload.params, json=payload.body
    )


CALL = JobSpec(model=CallPayload, run=_call, endpoints=(), side_effect=False)
