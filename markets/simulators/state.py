"""What a simulator counts and which faults it injects; tests read and set it."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

__all__ = ["STATE", "Faults", "Gateway", "Handler", "SimState", "sim_state", "simulator_app"]


@dataclass
class Faults:
    """Injected trouble; change it while the simulator runs.

    The next `fail_next` requests fail, then `error_rate` of them; every request waits
    `latency` seconds first. `lose_answer[endpoint]` requests to that endpoint are carried
    out and their answer then held `lost_answer_delay` seconds (the client times out
    although the market acted). Pages of `big_page` items or more wait `big_page_delay`.
    `change_while_paging` orders change status (and their change time) while a query is
    paged. Items in `retry_once` fail once with the market's "retry" answer. `quota_left`
    (when not None) is how many calls the app's quota still allows, `quota_period` the
    period its answer names. The next `access_denied` requests get Coupang's temporary 403
    "Access Denied" page. `slow_lists`: list queries without X-EXTENDED-TIMEOUT time out
    at the gateway (504).
    """

    fail_next: int = 0
    error_rate: float = 0.0
    latency: float = 0.0
    status: int = 503
    seed: int = 7
    lose_answer: Counter[str] = field(default_factory=Counter)
    lost_answer_delay: float = 2.0
    big_page: int = 50
    big_page_delay: float = 0.0
    change_while_paging: int = 0
    retry_once: set[str] = field(default_factory=set)
    quota_left: int | None = None
    quota_period: str = "HOURS"
    access_denied: int = 0
    slow_lists: bool = False
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def should_fail(self) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self.error_rate > 0 and self._random.random() < self.error_rate

    async def page_served(self, items: int) -> None:
        """Hold a big page as long as a real market takes to build it."""
        if items >= self.big_page and self.big_page_delay > 0:
            await asyncio.sleep(self.big_page_delay)

    def fails_once(self, item: str) -> bool:
        if item in self.retry_once:
            self.retry_once.discard(item)
            return True
        return False


@dataclass
class SimState:
    """Counters by endpoint (the route's name): requests that arrived, were served (2xx),
    refused with 429, failed by injection; and answers by status."""

    faults: Faults = field(default_factory=Faults)
    arrived: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    tokens_issued: int = 0
    # calls per account (Naver: the token's account, "SELF" for the app's own)
    accounts: Counter[str] = field(default_factory=Counter)
    # every key a request was signed or asked a token with (Coupang: the access key;
    # Naver: "client_id" or "client_id/account_id"), valid or not
    keys_seen: Counter[str] = field(default_factory=Counter)
    # side effects carried out, by what they did ("reply:3000001", "invoice:600000001")
    effects: Counter[str] = field(default_factory=Counter)
    # each block a market put on a vendor, in seconds (Coupang's grow with each violation)
    blocks: list[float] = field(default_factory=list)
    # how often each item of a batch (an invoice's box, a dispatch's product order) was posted
    items_posted: Counter[str] = field(default_factory=Counter)
    # the simulator's clock runs `skew` seconds ahead of real time (`advance`), and the
    # order changes `schedule`d for a moment of it happen once it is reached
    skew: float = 0.0
    scheduled: list[tuple[datetime, str, str]] = field(default_factory=list)

    async def fails(self, endpoint: str) -> bool:
        """The injected latency, then whether this request fails by injection (counted in
        `injected`); each simulator answers the failure in its market's words."""
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        if self.faults.should_fail():
            self.injected[endpoint] += 1
            return True
        return False

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.skew)

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock on (an hour passes in no time)."""
        self.skew += seconds

    def schedule(self, when: datetime, order: str, status: str) -> None:
        """Order `order` takes `status` at `when` (the simulator's clock)."""
        self.scheduled.append((when, order, status))

    def due(self) -> list[tuple[datetime, str, str]]:
        """The scheduled changes whose moment has come, taken off the schedule."""
        now = self.now()
        ready = [change for change in self.scheduled if change[0] <= now]
        self.scheduled = [change for change in self.scheduled if change[0] > now]
        return ready

    def record(self, endpoint: str, status: int) -> None:
        self.statuses[status] += 1
        if 200 <= status < 300:
            self.served[endpoint] += 1
        elif status == 429:
            self.rate_limited[endpoint] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "arrived": dict(self.arrived),
            "served": dict(self.served),
            "rate_limited": dict(self.rate_limited),
            "injected": dict(self.injected),
            "statuses": {str(code): count for code, count in self.statuses.items()},
            "tokens_issued": self.tokens_issued,
            "accounts": dict(self.accounts),
            "keys_seen": dict(self.keys_seen),
            "effects": dict(self.effects),
            "items_posted": dict(self.items_posted),
            "blocks": list(self.blocks),
        }


STATE = web.AppKey("sim_state", SimState)


def sim_state(app: web.Application) -> SimState:
    """The counters and faults of a simulator app."""
    return app[STATE]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (request, handler, endpoint name) -> the answer after the market's gateway checks
Gateway = Callable[[web.Request, Handler, str], Awaitable[web.StreamResponse]]
_STATS = "stats"


def simulator_app(sim: SimState, gateway: Gateway) -> web.Application:
    """An app whose every request passes `gateway` and is counted; `GET /_sim/stats` reports."""

    @web.middleware
    async def counting(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = request.match_info.route.name or request.path
        if name == _STATS:
            return await handler(request)
        sim.arrived[name] += 1
        response = await gateway(request, handler, name)
        sim.record(name, response.status)
        if sim.faults.lose_answer[name] > 0:
            sim.faults.lose_answer[name] -= 1
            await asyncio.sleep(sim.faults.lost_answer_delay)
        return response

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(sim.snapshot())

    app = web.Application(middlewares=[counting])
    app[STATE] = sim
    app.router.add_get("/_sim/stats", stats, name=_STATS)
    return app
