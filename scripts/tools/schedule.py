"""Scheduled fan-out: on each tick, one collection job per seller of a market.

`lanes schedule` (a loop, or `--once`) and `handler` (the Lambda behind the
template's EventBridge Scheduler rule) run the same `Scheduler.tick`:

- **Once per tick.** A tick is the schedule's period the moment falls in
  (Redis `TIME`, or the scheduler's `scheduled-time`, floored to `every`), so
  two schedulers, or one invoked twice, name the same tick. Its key
  `lanes:schedule:{queue}:{kind}:{tick}` is taken with SET NX (expiring
  after three periods); only its taker sends.
- **Every seller.** From a seller list the operator gives (one per line) or
  the market's credential source (a `file:` table per seller, a secret or
  parameter per seller). Every job is checked as `lanes enqueue` checks it
  before any is sent; `MessageGroupId` is the seller.
- **Spread.** Seller i of n is sent with `DelaySeconds` i * spread / n (spread
  at most 900 s, SQS's limit), so 5,000 sellers do not land in one second.
- **Nothing lost.** The job carries no window: a collection reads from its
  seller's watermark, so a tick missed (a scheduler down, a taker that died
  halfway) is read by the next one. Each job's id names its tick.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from lanes.errors import ConfigError
from lanes.logs import configure_logging
from lanes.policy import Lane
from lanes.settings import load_settings
from lanes.store import RedisStore
from markets import load_config
from markets.config import Config
from markets.credentials import list_sellers
from markets.service import credentials_source
from scripts.settings import CliSettings
from scripts.tools.enqueue import BadInput
from scripts.tools.inputs import UsageError, parse_duration
from scripts.tools.sending import Progress, group_id, send_stream
from scripts.tools.validate import BadJob, JobValidator
from worker.envelope import Envelope
from worker.queues import QueueName
from worker.sqs import OutgoingMessage, SqsClient

__all__ = ["MAX_DELAY", "Plan", "Scheduler", "TickReport", "handler", "read_sellers", "run"]

MAX_DELAY = 900  # SQS's longest DelaySeconds
_KEEP_TICKS = 3  # a tick key outlives its tick by two periods
_log = structlog.get_logger("scripts.tools.schedule")


@dataclass(frozen=True)
class Plan:
    """What one schedule sends: `kind` for every seller of `market` into `lane`, every
    `every` seconds, spread over `spread` seconds."""

    market: str
    kind: str = "collect_orders"
    lane: Lane = Lane.MEDIUM
    every: int = 600
    spread: int = 300
    sellers_file: Path | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise UsageError(f"every must be at least 1 s, not {self.every}")
        if not 0 <= self.spread <= min(MAX_DELAY, self.every):
            raise UsageError(
                f"spread must be 0 to {min(MAX_DELAY, self.every)} s (the period, at most "
                f"SQS's 900 s delay), not {self.spread}"
            )


@dataclass(frozen=True)
class TickReport:
    tick: int  # the tick's start, Unix seconds
    sent: int  # 0 when another scheduler had taken the tick
    taken: bool


def read_sellers(path: Path) -> list[str]:
    """One seller per line; blank lines and `#` comments skipped, repeats kept once."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the seller list: {exc}") from None
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return list(dict.fromkeys(line for line in lines if line))


def _delays(count: int, spread: int) -> Iterator[int]:
    for index in range(count):
        yield index * spread // count


class Scheduler:
    """Ticks of `plan`; Redis and SQS are borrowed, not owned."""

    def __init__(
        self,
        plan: Plan,
        *,
        settings: CliSettings,
        config: Config,
        store: RedisStore,
        sqs: SqsClient,
    ) -> None:
        self.plan = plan
        self._settings = settings
        self._config = config
        self._store = store
        self._sqs = sqs
        self._validator = JobValidator(config, plan.market)  # an unknown market fails here

    async def now(self) -> float:
        """Redis time: every scheduler floors the same clock."""
        seconds, micros = await self._store.client.time()
        return float(seconds) + micros / 1e6

    def tick_of(self, moment: float) -> int:
        return int(moment // self.plan.every) * self.plan.every

    def _key(self, tick: int) -> str:
        plan = self.plan
        queue = QueueName(self._settings.queue_prefix, plan.market, plan.lane).queue
        return f"lanes:schedule:{queue}:{plan.kind}:{tick}"

    async def sellers(self) -> list[str]:
        if self.plan.sellers_file is not None:
            return read_sellers(self.plan.sellers_file)
        source = credentials_source(self._settings, self._config, self.plan.market)
        return await list_sellers(source, self.plan.market)

    def messages(self, sellers: list[str], tick: int) -> list[OutgoingMessage]:
        """One checked message per seller, delayed over the spread; `BadInput` names every
        seller whose job the worker could not run (nothing is sent then)."""
        plan, bad, envelopes = self.plan, [], []
        for seller in sellers:
            try:
                envelope = Envelope(
                    kind=plan.kind,
                    market=plan.market,
                    seller=seller,
                    id=f"schedule-{plan.market}-{plan.kind}-{tick}-{seller}"[:128],
                )
                envelopes.append(self._validator.check_envelope(envelope).envelope)
            except (ValueError, BadJob) as exc:  # a pydantic ValidationError is a ValueError
                bad.append(f"seller {seller!r}: {str(exc).splitlines()[0]}")
        if bad:
            raise BadInput("\n".join(bad[:20] + [f"... {len(bad) - 20} more"] * (len(bad) > 20)))
        return [
            OutgoingMessage(body=e.body(), group_id=group_id(e.seller), delay_seconds=delay)
            for e, delay in zip(envelopes, _delays(len(envelopes), plan.spread), strict=True)
        ]

    async def tick(self, at: float | None = None, *, dry_run: bool = False) -> TickReport:
        """Send the tick `at` falls in (Redis time by default), unless it was taken."""
        tick = self.tick_of(at if at is not None else await self.now())
        messages = self.messages(await self.sellers(), tick)  # checked before taking the tick
        if dry_run:
            for message in messages:
                print(message.body)
            return TickReport(tick, 0, taken=False)
        ttl = self.plan.every * _KEEP_TICKS
        if not await self._store.client.set(self._key(tick), "1", nx=True, ex=ttl):
            _log.info("schedule.tick_taken_elsewhere", market=self.plan.market, tick=tick)
            return TickReport(tick, 0, taken=False)
        queue = QueueName(self._settings.queue_prefix, self.plan.market, self.plan.lane)
        url = await self._sqs.queue_url(queue.queue)
        with Progress(len(messages), what=f"tick {tick}") as progress:
            sent = await send_stream(self._sqs, url, messages, progress)
        _log.info("schedule.tick_sent", market=self.plan.market, tick=tick, sent=sent)
        return TickReport(tick, sent, taken=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick at every period's start until `stop` is set."""
        while not stop.is_set():
            report = await self.tick()
            print(f"tick {_iso(report.tick)}: sent {report.sent}", flush=True)
            wait = report.tick + self.plan.every - await self.now()
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, wait))
            except TimeoutError:
                continue


def _iso(tick: int) -> str:
    return datetime.fromtimestamp(tick, UTC).isoformat()


def plan_of(args: argparse.Namespace, settings: CliSettings) -> Plan:
    """The plan `lanes schedule`'s options describe."""
    return Plan(
        market=args.market,
        kind=args.kind,
        lane=Lane(args.lane),
        every=round(parse_duration(args.every).total_seconds()),
        spread=settings.schedule_spread if args.spread is None else args.spread,
        sellers_file=Path(args.sellers_file) if args.sellers_file else None,
    )


async def run(
    args: argparse.Namespace,
    settings: CliSettings,
    config: Config,
    *,
    store: RedisStore,
    sqs: SqsClient,
) -> int:
    """`lanes schedule`: one tick with `--once`, else a tick every period until a signal."""
    plan = plan_of(args, settings)
    scheduler = Scheduler(plan, settings=settings, config=config, store=store, sqs=sqs)
    if args.once or args.dry_run:
        report = await scheduler.tick(dry_run=args.dry_run)
        if not args.dry_run:
            state = "sent" if report.taken else "taken by another scheduler, sent"
            print(f"tick {_iso(report.tick)}: {state} {report.sent}")
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await scheduler.run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def _moment(event: Mapping[str, Any]) -> float | None:
    """The scheduler's `at` (`<aws.scheduler.scheduled-time>`), if it sent one."""
    at = event.get("at")
    if at is None:
        return None
    try:
        return datetime.fromisoformat(str(at).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(f"event 'at' is not an ISO 8601 moment: {at!r}") from None


def _seconds(every: object) -> int:
    """A period as seconds (600) or a duration ("10m")."""
    if isinstance(every, int):
        return every
    return round(parse_duration(str(every)).total_seconds())


async def _handle(event: Mapping[str, Any], settings: CliSettings) -> TickReport:
    config = load_config(settings.config)
    plan = Plan(
        market=str(event["market"]),
        kind=str(event.get("kind", "collect_orders")),
        lane=Lane(str(event.get("lane", Lane.MEDIUM.value))),
        every=_seconds(event.get("every", 600)),
        spread=int(event.get("spread", settings.schedule_spread)),
        sellers_file=Path(event["sellers_file"]) if event.get("sellers_file") else None,
    )
    async with (
        RedisStore(settings.redis_url) as store,
        SqsClient(endpoint_url=settings.sqs_endpoint_url) as sqs,
    ):
        scheduler = Scheduler(plan, settings=settings, config=config, store=store, sqs=sqs)
        return await scheduler.tick(_moment(event))


def handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """The Lambda entry point (`scripts.tools.schedule.handler`) of the EventBridge Scheduler rule:
    `{"market": M, "every": "10m", "at": "<aws.scheduler.scheduled-time>"}` (and optionally
    `kind`, `lane`, `spread`, `sellers_file`). A bad event raises: the scheduler's retry
    policy and dead-letter queue keep it."""
    settings = load_settings(CliSettings)
    configure_logging(settings.log_level)
    try:
        report = asyncio.run(_handle(event, settings))
    except (KeyError, ValueError, ConfigError, UsageError) as exc:
        print(f"lanes schedule: bad event or settings: {exc}", file=sys.stderr)
        raise
    return {"tick": _iso(report.tick), "taken": report.taken, "sent": report.sent}
