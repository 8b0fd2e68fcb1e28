"""Backfill jobs generated from a date range or a file of order ids.

A backfill is split into the windows a market's order query accepts, and
every job gets a producer `id` derived from what it asks for, so running the
same backfill twice sends jobs the worker recognises as already done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from lanes.config import MarketConfig
from markets.naver_jobs import KST
from scripts.inputs import UsageError

__all__ = [
    "ORDER_ID_FIELDS",
    "ORDER_WINDOWS",
    "Numbered",
    "OrderWindows",
    "id_jobs",
    "producer_id",
    "window_jobs",
]

# (where, body): a message body and where it came from, for error messages.
Numbered = tuple[str, str]


@dataclass(frozen=True)
class OrderWindows:
    """How a catalogue's `collect_orders` takes its range: the longest window, and its unit."""

    longest: timedelta
    whole_days: bool  # the payload takes days (both ends included) rather than moments


# The one place for each market's longest order query window.
ORDER_WINDOWS: dict[str, OrderWindows] = {
    # Coupang's ordersheets query by creation day: one day per job.
    "coupang": OrderWindows(timedelta(days=1), whole_days=True),
    # Naver's last-changed-statuses answers at most 24 hours per query.
    "naver": OrderWindows(timedelta(hours=24), whole_days=False),
}
# The `collect_order` payload field an id from an ids file fills.
ORDER_ID_FIELDS: dict[str, str] = {"coupang": "shipment_box_id", "naver": "order_id"}


def producer_id(*parts: str) -> str:
    """A stable id for one job: the same backfill always produces the same ids."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _catalogue(market_name: str, market: MarketConfig, table: dict[str, object]) -> str:
    catalogue = market.catalogue or ""
    if catalogue not in table:
        known = ", ".join(sorted(table))
        raise UsageError(
            f"backfill needs a market with a built-in catalogue ({known}); "
            f"market {market_name!r} has {catalogue or 'none'}"
        )
    return catalogue


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


def _moment(value: date | datetime, *, end: bool) -> datetime:
    """Naive values are Korean time (both markets' own); a day as an end includes that day."""
    if not isinstance(value, datetime):
        day = value + timedelta(days=1) if end else value
        return datetime.combine(day, time(), KST)
    return value if value.tzinfo is not None else value.replace(tzinfo=KST)


def window_jobs(
    market_name: str,
    market: MarketConfig,
    seller: str,
    since: date | datetime,
    until: date | datetime,
    step: timedelta | None,
) -> Iterator[Numbered]:
    """One `collect_orders` per window from `since` through `until`, each at most `step`
    long and never longer than the market accepts."""
    shape = ORDER_WINDOWS[_catalogue(market_name, market, dict(ORDER_WINDOWS))]
    step = min(step or shape.longest, shape.longest)
    if shape.whole_days:
        if step % timedelta(days=1):
            raise UsageError(f"market {market_name!r} takes whole days: use a --step like 1d")
        yield from _day_windows(market_name, seller, _day(since), _day(until), step.days)
    else:
        start, end = _moment(since, end=False), _moment(until, end=True)
        yield from _moment_windows(market_name, seller, start, end, step)


def _day_windows(
    market: str, seller: str, first: date, last: date, days: int
) -> Iterator[Numbered]:
    if last < first:
        raise UsageError(f"--until {last} is before --since {first}")
    day = first
    while day <= last:
        end = min(day + timedelta(days=days - 1), last)
        payload = {"since": day.isoformat(), "until": end.isoformat()}
        yield f"window {day}..{end}", _body("collect_orders", market, seller, payload, str(day))
        day = end + timedelta(days=1)


def _moment_windows(
    market: str, seller: str, start: datetime, end: datetime, step: timedelta
) -> Iterator[Numbered]:
    if end <= start:
        raise UsageError(f"--until {end.isoformat()} is not after --since {start.isoformat()}")
    while start < end:
        stop = min(start + step, end)
        payload = {"since": start.isoformat(), "until": stop.isoformat()}
        key = f"{start.isoformat()}/{stop.isoformat()}"
        yield (
            f"window {payload['since']}..{payload['until']}",
            _body("collect_orders", market, seller, payload, key),
        )
        start = stop


def id_jobs(
    market_name: str,
    market: MarketConfig,
    seller: str,
    ids_file: Path,
    id_field: str | None = None,
) -> Iterator[Numbered]:
    """One `collect_order` per non-blank line of `ids_file`."""
    field = id_field or ORDER_ID_FIELDS[_catalogue(market_name, market, dict(ORDER_ID_FIELDS))]
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
