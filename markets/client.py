"""One market's HTTP client: budget in the caller's lane, sign, send, sort the answer.

`MarketClient.send` makes one attempt (retries are `markets.retry`'s business):
it waits for budget (never an attempt; a Redis outage is waited out), signs,
sends once and sorts the answer into success, `RateLimited` (which cools the
budget for every worker), `TransientError` or `PermanentError`.
"""

from __future__ import annotations

import asyncio
import json
import re
import string
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import structlog
from yarl import URL

from lanes.budget import Budget
from lanes.config import GroupConfig
from lanes.errors import BudgetTimeout, BudgetUnavailable
from lanes.limiter import Limiter, Ticket
from lanes.policy import Lane
from markets.auth import Auth, NoAuth, Signer
from markets.config import EndpointConfig, MarketConfig
from markets.errors import (
    LateSend,
    NotSent,
    PermanentError,
    RetryLater,
    TransientError,
    late_send,
)
from markets.ratelimits import RateLimits, retry_after_seconds

__all__ = [
    "Answer",
    "Call",
    "MarketClient",
    "endpoint_limits",
    "retry_after_seconds",
    "send_check_trace",
]

log = structlog.get_logger("markets.client")

_MESSAGE_CHARS = 300
_REDIS_BACKOFF_S = (0.1, 5.0)  # first and longest pause while Redis is unreachable
_SPACES = re.compile(r"\s+")


def send_check_trace() -> aiohttp.TraceConfig:
    """The last lateness check, on the markets' session (docs/DESIGN.md rule 9).

    `MarketClient` checks its ticket before the request starts; with this trace on the
    session it checks again where aiohttp writes the bytes, after its own work and the
    other hooks (a side effect's "posting" mark is a Redis round trip): when the headers
    are ready (a request without a body is written right after) and before a body's first
    chunk, which goes out with the headers in one write. That write runs in a task of its
    own on Python < 3.12, tens of milliseconds later on a loaded loop. A late ticket is
    moved to now where the market's windows have room (`Ticket.renew`: the request then
    leaves on that connection), else `LateSend` is raised (from the body's task aiohttp
    wraps it in a `ClientConnectionError`: `late_send` finds it).
    """

    async def check(ticket: Any) -> None:
        if isinstance(ticket, Ticket) and not ticket.may_send() and not await ticket.renew():
            raise LateSend(
                "late past its tolerance when its bytes were to be written",
                market=ticket.budget.name,
            )

    async def headers(_session: aiohttp.ClientSession, context: Any, _params: Any) -> None:
        await check(context.trace_request_ctx)

    async def first_chunk(_session: aiohttp.ClientSession, context: Any, _params: Any) -> None:
        # Later chunks follow bytes already written: the request has left.
        if not getattr(context, "body_written", False):
            await check(context.trace_request_ctx)
            context.body_written = True

    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(headers)
    config.on_request_chunk_sent.append(first_chunk)
    return config


@dataclass(frozen=True)
class Call:
    """One request to a named endpoint: path placeholders, query, a JSON or form body, and
    headers of its own (the signature's are added)."""

    endpoint: str
    path: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    form: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str

    def body(self) -> Any:
        if not self.text:
            return None
        try:
            return json.loads(self.text)
        except ValueError:
            return self.text


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_query(params: Mapping[str, Any]) -> str:
    """The query string in the given order; None values left out, lists repeated."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((name, _query_value(each)) for each in values)
    return urlencode(pairs)


def _placeholders(template: str) -> list[str]:
    return [name for _text, name, _spec, _conv in string.Formatter().parse(template) if name]


def _one_line(text: str) -> str:
    line = _SPACES.sub(" ", text).strip()
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 1] + "…"


def _market_error(body: Any, fallback: str) -> tuple[str | None, str]:
    """The market's own error code and message, where its body has them."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]  # Cafe24's {"error": {"code", "message"}}
    if isinstance(body, dict):
        code = body.get("code") or body.get("error")
        message = body.get("message") or body.get("error_description") or fallback
        return (str(code) if code is not None else None), _one_line(str(message))
    return None, _one_line(str(body) if body else fallback)


def endpoint_limits(
    market_name: str,
    market: MarketConfig,
    endpoint_name: str,
    seller: str | None,
    *,
    need_seller: bool = True,
) -> tuple[EndpointConfig, EndpointConfig | GroupConfig]:
    """The endpoint and the limits that admit it (its group's, where it has one); a
    `PermanentError` for an unknown endpoint, or a per-seller budget and no seller. No I/O:
    the job validation and the client share this one check."""
    endpoint = market.endpoints.get(endpoint_name)
    if endpoint is None:
        known = ", ".join(sorted(market.endpoints)) or "none"
        raise PermanentError(
            f"unknown endpoint {endpoint_name!r} (declared: {known})", market=market_name
        )
    limits = market.groups[endpoint.group] if endpoint.group else endpoint
    if need_seller and limits.scope == "seller" and not seller:
        raise PermanentError(
            "this endpoint's budget is counted per seller: the message needs a seller",
            market=market_name,
            endpoint=endpoint_name,
        )
    if limits.scope == "seller" and seller and ("{" in seller or "}" in seller):
        # The seller is part of the budget's Redis key, whose `{...}` is the hash tag.
        raise PermanentError(
            "seller may not contain '{' or '}' (its budget is counted per seller)",
            market=market_name,
            endpoint=endpoint_name,
        )
    return endpoint, limits


class MarketClient:
    """Calls one market's endpoints on a session someone else owns (see `markets.Markets`)."""

    def __init__(
        self,
        name: str,
        config: MarketConfig,
        session: aiohttp.ClientSession,
        limiter: Limiter,
        auth: Auth | None = None,
        *,
        seller_path: str | None = None,
    ) -> None:
        self.name = name
        # Path placeholders the message's seller fills: `seller`, and the market's own name
        # for it (`Market.seller_path`, Coupang's `vendorId`).
        self._seller_fields = frozenset({"seller", seller_path or "seller"})
        self.config = config
        self.auth: Auth = auth or NoAuth()
        self._session = session
        self._limiter = limiter
        self._budgets: dict[tuple[str, str | None], Budget] = {}
        self._limits = RateLimits(name, config.options, limiter)

    def endpoint(self, name: str) -> EndpointConfig:
        return endpoint_limits(self.name, self.config, name, None, need_seller=False)[0]

    def budget(self, endpoint_name: str, seller: str | None) -> Budget:
        """The budget that admits `endpoint_name` for `seller` (its group's, where it has one)."""
        endpoint, limits = endpoint_limits(self.name, self.config, endpoint_name, seller)
        scoped_seller = seller if limits.scope == "seller" else None
        key = (endpoint.group or endpoint_name, scoped_seller)
        budget = self._budgets.get(key)
        if budget is None:
            budget = Budget.for_endpoint(
                self.name,
                key[0],
                limits.all_windows(),
                scope=limits.scope,
                seller=scoped_seller,
                margin_ms=self.config.margin_ms,
                lend_idle=self.config.lend_idle,
                bucket=limits.bucket,
            )
            self._budgets[key] = budget
        return budget

    def url(self, call: Call, seller: str | None) -> URL:
        """The full URL, percent-encoded exactly once: what is signed is what is sent."""
        endpoint = self.endpoint(call.endpoint)
        values: dict[str, str] = {}
        for name in _placeholders(endpoint.path):
            value = call.path.get(name)
            if value is None and name in self._seller_fields:
                value = seller
            if value is None or value == "":
                raise PermanentError(
                    f"path {endpoint.path} needs {name!r}", market=self.name, endpoint=call.endpoint
                )
            values[name] = quote(str(value), safe="")
        path = endpoint.path.format(**values)
        query = build_query(call.params)
        text = self._base(seller, call.endpoint) + path + (f"?{query}" if query else "")
        return URL(text, encoded=True)

    def _base(self, seller: str | None, endpoint: str) -> str:
        """The base URL; a `{seller}` in it (a market with a host per seller, Cafe24's
        `https://{seller}.cafe24api.com/api/v2`) is the message's seller."""
        base = self.config.base_url.rstrip("/")
        if "{seller}" not in base:
            return base
        if not seller:
            raise PermanentError(
                f"base_url {base} needs the message's seller", market=self.name, endpoint=endpoint
            )
        return base.replace("{seller}", quote(seller, safe=""))

    async def send(
        self,
        call: Call,
        lane: Lane,
        *,
        seller: str | None,
        deadline: float | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Any:
        """One attempt signed for `seller`; returns the 2xx answer's body (parsed JSON where
        it is JSON). A 401 is tried once more with a fresh credential where the auth has one."""

        async def prepare() -> Signer:
            return await self.auth.prepare(seller, lane, deadline)

        try:
            return await self._exchange(call, lane, seller, deadline, on_sent, prepare)
        except PermanentError as exc:
            if exc.status != 401 or not await self.auth.invalidate(seller):
                raise
            log.info("market.auth_refused_refreshing", market=self.name, endpoint=call.endpoint)
            return await self._exchange(call, lane, seller, deadline, on_sent, prepare)

    async def send_unsigned(
        self, call: Call, lane: Lane, *, deadline: float | None = None, seller: str | None = None
    ) -> Any:
        """One attempt without the market's auth, in the endpoint's own budget: the call that
        fetches the auth itself (Naver's token; Cafe24's, for `seller`'s own host)."""
        return await self._exchange(call, lane, seller, deadline, None, None)

    async def _exchange(
        self,
        call: Call,
        lane: Lane,
        seller: str | None,
        deadline: float | None,
        on_sent: Callable[[], None] | None,
        prepare: Callable[[], Awaitable[Signer]] | None,
    ) -> Any:
        endpoint = self.endpoint(call.endpoint)
        url = self.url(call, seller)
        budget = self.budget(call.endpoint, seller)
        bound = log.bind(market=self.name, endpoint=call.endpoint, lane=lane.value, seller=seller)
        timeout = endpoint.timeout or self.config.timeout
        while True:
            signer, ticket = await self._admit(budget, lane, deadline, prepare, bound)
            signed = signer(endpoint.method, url.raw_path, url.raw_query_string) if signer else {}
            headers = {**call.headers, **signed}
            if ticket.may_send():
                left = True
                try:
                    answer = await self._request(
                        endpoint.method, url, headers, call, deadline, timeout, ticket
                    )
                    break
                except LateSend:
                    left = False  # stopped before a byte left: no call was made
                finally:
                    # A call counts once it may have reached the market, answered or not.
                    if left and on_sent is not None:
                        on_sent()
            # Late past its tolerance (docs/DESIGN.md rule 9): give the entry back, ask again.
            await self._limiter.release(budget, ticket.members)
        return await self._sort(answer, call.endpoint, seller, budget, ticket, bound)

    async def _admit(
        self,
        budget: Budget,
        lane: Lane,
        deadline: float | None,
        prepare: Callable[[], Awaitable[Signer]] | None,
        bound: Any,
    ) -> tuple[Signer | None, Ticket]:
        """Auth prepared (a token may be fetched) and budget taken; a Redis outage is waited
        out (fail closed: no request without budget, and no attempt spent on Redis)."""
        pause = _REDIS_BACKOFF_S[0]
        while True:
            try:
                signer = await prepare() if prepare is not None else None
                ticket = await self._limiter.admit(budget, lane, deadline=deadline)
            except BudgetTimeout as exc:
                raise RetryLater(
                    exc.retry_after, f"budget {budget.name} has no room before the deadline"
                ) from exc
            except BudgetUnavailable as exc:
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise RetryLater(pause, str(exc)) from exc
                bound.warning("market.budget_unavailable", error=str(exc), pause=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _REDIS_BACKOFF_S[1])
            else:
                return signer, ticket

    async def _request(
        self,
        method: str,
        url: URL,
        headers: dict[str, str],
        call: Call,
        deadline: float | None,
        seconds: float,
        ticket: Ticket,
    ) -> Answer:
        if deadline is not None:
            # Past the deadline a slow answer is still worth its market timeout's tail.
            seconds = min(seconds, max(deadline - time.monotonic(), 1.0))
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                json=call.json if call.form is None else None,
                data=dict(call.form) if call.form is not None else None,
                timeout=aiohttp.ClientTimeout(total=seconds),
                trace_request_ctx=ticket,  # for `send_check_trace`
            ) as response:
                text = await response.text()
                return Answer(response.status, response.headers, text)
        except TimeoutError as exc:
            raise TransientError(
                f"no answer within {seconds:.1f}s", market=self.name, endpoint=call.endpoint
            ) from exc
        except aiohttp.ClientError as exc:
            if late_send(exc) is not None:  # stopped in the body's task before a byte left
                raise LateSend(
                    "late past its tolerance when its body was to be written",
                    market=self.name,
                    endpoint=call.endpoint,
                ) from exc
            # No connection made: the market never saw it (NotSent); else it may have.
            refused = isinstance(exc, aiohttp.ClientConnectorError)
            raise (NotSent if refused else TransientError)(
                f"{'cannot connect' if refused else 'connection failed'}: "
                f"{_one_line(str(exc)) or type(exc).__name__}",
                market=self.name,
                endpoint=call.endpoint,
            ) from exc

    def seller_budgets(self, seller: str | None, budget: Budget) -> list[Budget]:
        """Every budget of `seller`'s in this market (one per endpoint or group counted per
        seller): what a seller-wide limit covers, Cafe24's mall-wide usage limit. Without
        a seller, `budget` alone."""
        if not seller:
            return [budget]
        found = {budget.name: budget}
        for name, endpoint in self.config.endpoints.items():
            limits = self.config.groups[endpoint.group] if endpoint.group else endpoint
            if limits.scope == "seller":
                each = self.budget(name, seller)
                found.setdefault(each.name, each)
        return list(found.values())

    async def _sort(
        self,
        answer: Answer,
        endpoint: str,
        seller: str | None,
        budget: Budget,
        ticket: Ticket,
        bound: Any,
    ) -> Any:
        warning = answer.headers.get("X-CAG-Warnings")
        if warning:
            bound.warning("market.near_limit", warning=_one_line(warning))
        await self._limits.observe(answer.headers, budget, bound)
        await self._limits.observe_usage(
            answer.headers, lambda: self.seller_budgets(seller, budget), bound
        )
        status = answer.status
        if 200 <= status < 300:
            return answer.body()
        code, message = _market_error(answer.body(), f"HTTP {status}")
        if self._limits.is_quota(code):
            assert code is not None
            raise await self._limits.quota_exhausted(
                answer.headers, code, endpoint, budget, bound.bind(code=code)
            )
        if status == 429 or self._limits.is_denied_burst(status, answer.text):
            text = f"{status} {code + ': ' if code else ''}{message}"
            raise await self._limits.rate_limited(
                answer.headers, text, endpoint, budget, ticket, bound.bind(code=code)
            )
        if status >= 500 or status == 408:
            raise TransientError(
                f"{status} {code + ': ' if code else ''}{message}",
                market=self.name,
                endpoint=endpoint,
                status=status,
            )
        raise PermanentError(message, market=self.name, endpoint=endpoint, status=status, code=code)
