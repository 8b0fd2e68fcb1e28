"""Backfill jobs generated from a date range or a file of order ids.

A backfill follows the same rules as the market's `collect_orders`: windows of at
most the market's longest span (Coupang 31 days, Naver 24 hours; `markets/registry.py`
holds each market's order shape), every active status unless `statuses` names
some, and every job gets a producer `id` derived from what it asks for, so running
the same backfill twice sends jobs the worker recognises as already done. Windows never
share an instant: Coupang's are whole days (each day in one window), Naver's run from
`since` to before `until`, the next window's `since`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path

from markets.config import MarketConfig
from markets.market import Market
from markets.paging import day_windows, windows
from markets.registry import MARKETS, market_of
from scripts.tools.inputs import UsageError

__all__ = ["Numbered", "id_jobs", "producer_id", "window_jobs"]

# (where, body): a message body and where it came from, for error messages.
Numbered = tuple[str, str]


def producer_id(*parts: str) -> str:
    """A stable id for one job: the same backfill always produces the same ids."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _built_in(market_name: str, market: MarketConfig) -> Market:
    found = market_of(market)
    if found is None:
        known = ", ".join(sorted(MARKETS))
        raise UsageError(
            f"backfill needs a market with a built-in catalogue ({known}); "
            f"market {market_name!r} has {market.catalogue or 'none'}"
        )
    return found


def _body(kind: str, market: str, seller: str, payload: Mapping[str, object], key: str) -> str:
    envelope = {
        "kind": kind,
        "market": market,
        "seller": seller,
        "payload": payload,
        "id": producer_id(market, kind, seller, key),
    }
    return json.dumps(envelope, separators=(",", ":"))


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _moment(value: date | datetime, zone: tzinfo, *, end: bool) -> datetime:
    """Naive values are the market's own time; a day as an end includes that day."""
    if not isinstance(value, datetime):
        day = value + timedelta(days=1) if end else value
        return datetime.combine(day, time(), zone)
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def window_jobs(
    market_name: str,
    market: MarketConfig,
    seller: str,
    since: date | datetime,
    until: date | datetime,
    step: timedelta | None,
    statuses: Sequence[str] = (),
) -> Iterator[Numbered]:
    """One `collect_orders` per window from `since` through `until`, each at most `step`
    long and never longer than the market accepts; `statuses` (default: every active
    one) go into each job."""
    built_in = _built_in(market_name, market)
    shape = built_in.orders
    step = min(step or shape.max_span, shape.max_span)
    extra: dict[str, object] = {"statuses": list(statuses)} if statuses else {}
    spans: Iterator[tuple[date, date]] | Iterator[tuple[datetime, datetime]]
    if shape.whole_days:
        if step % timedelta(days=1):
            raise UsageError(f"market {market_name!r} takes whole days: use a --step like 1d")
        first, last = _day(since), _day(until)
        if last < first:
            raise UsageError(f"--until {last} is before --since {first}")
        spans = day_windows(first, last, step)
    else:
        zone = built_in.time_zone
        start, end = _moment(since, zone, end=False), _moment(until, zone, end=True)
        if end <= start:
            raise UsageError(f"--until {end.isoformat()} is not after --since {start.isoformat()}")
        spans = windows(start, end, step)
    for low, high in spans:
        payload = {"since": low.isoformat(), "until": high.isoformat(), **extra}
        key = f"{payload['since']}/{payload['until']}/{','.join(statuses)}"
        where = f"window {payload['since']}..{payload['until']}"
        yield where, _body("collect_orders", market_name, seller, payload, key)


def id_jobs(
    market_name: str,
    market: MarketConfig,
    seller: str,
    ids_file: Path,
    id_field: str | None = None,
) -> Iterator[Numbered]:
    """One `collect_order` per non-blank line of `ids_file`."""
    field = id_field or _built_in(market_name, market).orders.id_field
    try:
        with ids_file.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                order_id = line.strip()
                if order_id:
                    yield (
                        f"{ids_file}:{number}",
                        _body("collect_order", market_name, seller, {field: order_id}, order_id),
                    )
    except OSError as exc:
        raise UsageError(f"cannot read {ids_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{ids_file}: not UTF-8 text") from None
