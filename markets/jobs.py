"""What a job is: a payload model, a coroutine, whether it changes anything; and `call`.

A job talks to its market only through `JobContext` (`call`, `effect`), which takes
budget in the job's lane and retries each request by the lane's policy; a side
effect whose answer was lost is checked, never re-posted blindly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from lanes.policy import Lane
from markets.client import Call, MarketClient
from markets.errors import NotSent, OutcomeUnknown, PermanentError, RateLimited, TransientError
from markets.open_orders import OpenOrders
from markets.retry import Backoff, retry_in_lane
from markets.watermark import Watermark, Watermarks

__all__ = [
    "CALL",
    "NOT_LANDED",
    "CallPayload",
    "JobContext",
    "JobSpec",
    "Landed",
    "Payload",
    "Window",
    "maybe_landed",
]

T = TypeVar("T")


class Payload(BaseModel):
    """Base of every job payload: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    # Fields of which a payload must give exactly one (two ways to name one thing), and
    # fields of which it must give at least one (what an update changes).
    exactly_one_of: ClassVar[tuple[str, ...]] = ()
    at_least_one_of: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _given(self) -> Self:
        if self.exactly_one_of and self._count_given(self.exactly_one_of) != 1:
            raise ValueError(f"give exactly one of {' and '.join(self.exactly_one_of)}")
        if self.at_least_one_of and self._count_given(self.at_least_one_of) == 0:
            raise ValueError(f"give {' or '.join(self.at_least_one_of)} (or several)")
        return self

    def _count_given(self, names: tuple[str, ...]) -> int:
        return sum(getattr(self, name) is not None for name in names)


class Window(Payload):
    """A collection's window [since, until), both optional: `until` needs `since` and comes
    after it (the orders collections of markets that take moments, not days)."""

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.since is None and self.until is not None:
            raise ValueError("until needs since")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until is not after since")
        return self


# What `landed` answers when the earlier request did not land: send it again.
NOT_LANDED: Any = object()
Landed = Callable[[], Awaitable[Any]]


def maybe_landed(error: TransientError) -> bool:
    """Could the market have acted on a request that ended in `error`? A 429, a 408 and
    a refused connection say no; a timeout, a dropped connection or a 5xx cannot say."""
    return not isinstance(error, RateLimited | NotSent) and error.status != 408


@dataclass
class JobContext:
    """One job run: its market client, seller, lane, deadline and attempt policy.

    `resumed`: an earlier attempt of this job may have landed (its worker stopped while
    posting), so every side effect checks first, as after a lost answer. `watermark`: where
    the seller's collection watermark moves once the result is delivered.
    """

    client: MarketClient
    seller: str
    lane: Lane
    deadline: float | None
    max_attempts: int | None
    backoff: Backoff
    watermarks: Watermarks | None = None
    open_orders: OpenOrders | None = None
    resumed: bool = False
    calls: int = 0
    watermark: Watermark | None = None

    def _sent(self) -> None:
        self.calls += 1

    async def attempts(self, attempt: Callable[[], Awaitable[T]], endpoint: str) -> T:
        """Run `attempt` with the lane's retries (a `TransientError` is tried again)."""
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

    async def send(self, request: Call) -> Any:
        """One attempt, no retry."""
        return await self.client.send(
            request, self.lane, seller=self.seller, deadline=self.deadline, on_sent=self._sent
        )

    async def call(
        self,
        endpoint: str,
        *,
        path: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One request with the lane's retries; returns the 2xx answer's body. For reads and
        idempotent writes (PUT): a side effect that must not happen twice uses `effect`."""
        request = Call(
            endpoint, path=path or {}, params=params or {}, json=json, headers=headers or {}
        )
        return await self.attempts(lambda: self.send(request), endpoint)

    async def effect(
        self,
        request: Call | Callable[[], Call],
        *,
        landed: Landed | None,
        already: Callable[[PermanentError], bool] | None = None,
    ) -> Any:
        """A side effect that survives a retry (docs/DESIGN.md rule 11).

        After an attempt whose answer was lost, and from the first attempt of a `resumed`
        job, `landed()` checks whether an earlier request reached the market: its result is
        the job's answer, `NOT_LANDED` sends the request again, and it raises
        `OutcomeUnknown` where the market cannot tell. With no `landed`, a request is sent
        again only where the market refuses a duplicate and `already` recognises that
        refusal (then counted as done); with neither, it is `OutcomeUnknown`, not sent.
        `request` may be built anew for each attempt (what is left to do).
        """
        uncertain = self.resumed
        build = request if callable(request) else lambda: request

        async def attempt() -> Any:
            nonlocal uncertain
            if uncertain:
                if landed is not None:
                    found = await landed()
                    if found is not NOT_LANDED:
                        return found
                elif already is None:
                    raise OutcomeUnknown(
                        "an earlier attempt may have landed and the market cannot tell "
                        "whether it was done; not sent again",
                        market=self.client.name,
                        endpoint=build().endpoint,
                    )
            try:
                return await self.send(build())
            except TransientError as exc:
                uncertain = uncertain or maybe_landed(exc)
                raise
            except PermanentError as exc:
                if uncertain and already is not None and already(exc):
                    return {"already_done": True, "market_said": exc.message}
                raise

        return await self.attempts(attempt, build().endpoint)


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
    if context.client.endpoint(payload.endpoint).method == "POST":
        # A POST is not idempotent and nothing here can check what landed.
        request = Call(
            payload.endpoint, path=payload.path, params=payload.params, json=payload.body
        )
        return await context.effect(request, landed=None)
    return await context.call(
        payload.endpoint, path=payload.path, params=payload.params, json=payload.body
    )


CALL = JobSpec(model=CallPayload, run=_call, endpoints=(), side_effect=False)
