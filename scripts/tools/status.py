"""`lanes status`: queue depths per market and lane, live usage per budget.

Each lane queue (and its dead-letter queue) also shows the age of its oldest job not
yet settled, from the waiting sets the status records keep (`worker.tracking`: SQS
gives that age only to CloudWatch, and reading it off the queue would receive
messages), shown only while the queue holds messages; and its pause flag, with who set
it and when (`worker.pauses`).

App-scope budgets come from the config; seller-scope ones (one per seller)
are found by scanning Redis for their keys. Each budget shows its effective
limit and where it comes from (configured, or a lower limit the market
advertised), its 429 cooldown (and level) and quota pause; below, the
lateness histogram of admitted requests that every worker shares.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lanes.budget import Budget, SellerStates
from lanes.config import GroupConfig
from lanes.errors import BudgetUnavailable
from lanes.lateness import read_lateness
from lanes.policy import Lane
from lanes.usage import Usage
from markets.config import Config, EndpointConfig, MarketConfig
from scripts.tools.table import render_table
from worker.pauses import LanePauses
from worker.queues import QueueName
from worker.sqs import QueueMissing, SqsClient
from worker.tracking import oldest_waiting

__all__ = [
    "BudgetRow",
    "QueueDepth",
    "Snapshot",
    "budgets_of",
    "queue_depths",
    "render_snapshot",
    "snapshot",
]


@dataclass(frozen=True)
class QueueDepth:
    """A lane queue's messages by state, and its dead-letter queue's (None: queue missing);
    the age in seconds of each one's oldest unsettled job (None: empty, or none known)."""

    market: str
    lane: str
    visible: int | None
    in_flight: int | None
    delayed: int | None
    dead_letter: int | None
    dead_letter_in_flight: int | None = None
    oldest_age: float | None = None
    dead_letter_oldest_age: float | None = None

    def holds(self, *, dead_letter: bool = False) -> bool:
        """Whether the queue holds any message (an age is shown only then)."""
        if dead_letter:
            return bool(self.dead_letter or self.dead_letter_in_flight)
        return bool(self.visible or self.in_flight or self.delayed)


@dataclass(frozen=True)
class BudgetRow:
    """A budget's first window: requests in it by lane, reservations ahead, cooldown left;
    its effective limit and the limit's source, the cooldown level, the quota pause."""

    budget: str
    limit: int
    seconds: float
    in_window: dict[str, int]
    reserved: dict[str, int]
    cooldown: float
    configured: int = 0
    limit_source: str = "configured"
    advertised_for: float = 0.0
    level: int = 0
    quota_pause: float = 0.0

    @property
    def used(self) -> int:
        return sum(self.in_window.values())


@dataclass(frozen=True)
class Snapshot:
    queues: list[QueueDepth]
    budgets: list[BudgetRow]
    budgets_error: str | None = None
    lateness: dict[str, int] | None = None
    paused: dict[str, dict[str, Any]] | None = None  # "market:lane" -> {"by", "at"}

    def as_json(self) -> dict[str, Any]:
        return {
            "queues": [asdict(depth) for depth in self.queues],
            "paused": self.paused or {},
            "budgets": [{**asdict(row), "used": row.used} for row in self.budgets],
            "budgets_error": self.budgets_error,
            "lateness": self.lateness or {},
            "seller_budgets": seller_budgets(self.budgets),
        }


def seller_budgets(rows: Iterable[BudgetRow]) -> dict[str, int]:
    """Per-seller budgets by endpoint (or group), `market:endpoint` -> sellers listed."""
    return dict(Counter(row.budget.rsplit(":", 1)[0] for row in rows if row.budget.count(":") > 1))


def _count(attributes: dict[str, str], name: str) -> int:
    return int(attributes.get(name, "0"))


async def _depth(sqs: SqsClient, prefix: str, market: str, lane: Lane) -> QueueDepth:
    names = QueueName(prefix, market, lane)
    wanted = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    try:
        have = await sqs.attributes(await sqs.queue_url(names.queue), wanted)
        lane_depth: tuple[int | None, ...] = tuple(_count(have, name) for name in wanted)
    except QueueMissing:
        lane_depth = (None, None, None)
    try:
        dead = await sqs.attributes(await sqs.queue_url(names.dead_letter), wanted[:2])
        dead_depth: tuple[int | None, ...] = tuple(_count(dead, name) for name in wanted[:2])
    except QueueMissing:
        dead_depth = (None, None)
    visible, in_flight, delayed = lane_depth
    return QueueDepth(market, lane.value, visible, in_flight, delayed, *dead_depth)


async def _with_ages(redis: aioredis.Redis, depths: list[QueueDepth]) -> list[QueueDepth]:
    """`depths` with the oldest ages of the queues that hold messages, read for those only
    (a waiting set may still name a job settled where no record told, until it expires)."""
    asked = [(d.market, d.lane, dead) for d in depths for dead in (False, True)
             if d.holds(dead_letter=dead)]  # fmt: skip
    ages = dict(zip(asked, await oldest_waiting(redis, asked, time.time()), strict=True))
    return [
        replace(
            d,
            oldest_age=ages.get((d.market, d.lane, False)),
            dead_letter_oldest_age=ages.get((d.market, d.lane, True)),
        )
        for d in depths
    ]


async def queue_depths(sqs: SqsClient, prefix: str, markets: Iterable[str]) -> list[QueueDepth]:
    return [await _depth(sqs, prefix, market, lane) for market in markets for lane in Lane]


async def budgets_of(redis: aioredis.Redis, name: str, market: MarketConfig) -> list[Budget]:
    """Every app-scope budget of the market, and every seller-scope one used within its
    state's day (the state hash expires a day after it was made; its log a window after
    its last request)."""
    limits: dict[str, GroupConfig | EndpointConfig] = dict(market.groups)
    limits.update({key: value for key, value in market.endpoints.items() if value.group is None})
    budgets: list[Budget] = []
    for budget_name, limit in sorted(limits.items()):
        windows = limit.all_windows()
        if limit.scope == "app":
            budgets.append(
                Budget.for_endpoint(
                    name, budget_name, windows, margin_ms=market.margin_ms, bucket=limit.bucket
                )
            )
            continue
        states = SellerStates(name, budget_name)
        try:
            found = redis.scan_iter(match=states.pattern, count=1000)
            keys = [key.decode() async for key in found]
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"redis unavailable: {exc}") from exc
        for key in sorted(keys):
            seller = states.seller(key)
            budgets.append(
                Budget.for_endpoint(
                    name,
                    budget_name,
                    windows,
                    scope="seller",
                    seller=seller,
                    margin_ms=market.margin_ms,
                    bucket=limit.bucket,
                )
            )
    return budgets


async def _budget_rows(
    redis: aioredis.Redis, usage: Usage, config: Config, markets: Iterable[str]
) -> list[BudgetRow]:
    rows: list[BudgetRow] = []
    for market in markets:
        for budget in await budgets_of(redis, market, config.market(market)):
            now = await usage.read(budget)
            rows.append(
                BudgetRow(
                    budget=budget.name,
                    limit=now.limit,
                    seconds=budget.shown[1],
                    in_window={lane.value: now.in_window[lane] for lane in Lane},
                    reserved={lane.value: now.reserved[lane] for lane in Lane},
                    cooldown=now.cooldown,
                    configured=budget.shown[0],
                    limit_source=now.limit_source,
                    advertised_for=now.advertised_for,
                    level=now.level,
                    quota_pause=now.quota_pause,
                )
            )
    return rows


async def snapshot(
    sqs: SqsClient,
    redis: aioredis.Redis,
    usage: Usage,
    config: Config,
    *,
    prefix: str,
    markets: list[str],
    need_redis: bool = False,
) -> Snapshot:
    """Queue depths and budget usage now; Redis being down still shows the queues, unless
    `need_redis` (`lanes status`: an operator must not read "no budgets in use" when
    nothing could be read), where it raises one-line `BudgetUnavailable`."""
    queues = await queue_depths(sqs, prefix, markets)
    try:
        budgets = await _budget_rows(redis, usage, config, markets)
        lateness = await read_lateness(redis)
        queues = await _with_ages(redis, queues)
        paused = await LanePauses(redis).all()
    except (BudgetUnavailable, RedisError, OSError) as exc:
        if need_redis:
            raise BudgetUnavailable(f"cannot read Redis for the budgets: {exc}") from exc
        return Snapshot(queues, [], budgets_error=str(exc))
    return Snapshot(queues, budgets, lateness=lateness, paused=paused)


def _cell(value: int | None) -> str:
    return "missing" if value is None else str(value)


def _age(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 60:.1f}min" if value >= 60 else f"{value:.0f}s"


def _state(state: Snapshot, depth: QueueDepth) -> str:
    if state.paused is None:
        return "?"  # Redis could not be read
    flag = state.paused.get(f"{depth.market}:{depth.lane}")
    return f"paused by {flag.get('by', '?')} at {flag.get('at', '?')}" if flag else "running"


def render_snapshot(state: Snapshot) -> str:
    queue_rows = [
        [q.market, q.lane, _cell(q.visible), _cell(q.in_flight), _cell(q.delayed),
         _age(q.oldest_age), _cell(q.dead_letter), _age(q.dead_letter_oldest_age),
         _state(state, q)]
        for q in state.queues
    ]  # fmt: skip
    parts = [
        render_table(
            ["market", "lane", "visible", "in flight", "delayed", "oldest", "dead-letter",
             "oldest dead", "state"],
            queue_rows,
        )
    ]  # fmt: skip
    if state.budgets_error:
        parts.append(f"budgets: {state.budgets_error}")
    elif state.budgets:
        budget_rows = [
            [
                row.budget,
                f"{row.used}/{row.limit} per {row.seconds:g}s",
                *(row.in_window[lane.value] for lane in Lane),
                sum(row.reserved.values()),
                _limit_source(row),
                f"{row.cooldown:.1f}s (level {row.level})" if row.cooldown else "-",
                f"{row.quota_pause:.0f}s" if row.quota_pause else "-",
            ]
            for row in state.budgets
        ]
        parts.append(
            render_table(
                ["budget", "used", "high", "medium", "low", "ahead", "limit from", "cooldown",
                 "quota pause"],
                budget_rows,
            )
        )  # fmt: skip
    else:
        parts.append("budgets: none in use")
    if state.budgets and seller_budgets(state.budgets):
        parts.append(
            "per-seller budgets used within a day: "
            + ", ".join(f"{name} {count}" for name, count in seller_budgets(state.budgets).items())
        )
    if state.lateness:
        parts.append(
            "lateness of admitted requests (all workers, last hour): "
            + ", ".join(f"{name} {count}" for name, count in state.lateness.items())
        )
    return "\n\n".join(parts)


def _limit_source(row: BudgetRow) -> str:
    if row.limit_source == "configured":
        return "configured"
    return f"{row.limit_source} (configured {row.configured}, {row.advertised_for:.0f}s left)"
