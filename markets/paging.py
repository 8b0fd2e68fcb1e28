"""What every collection shares: windows of at most a market's span, the page loop,
and the incremental window from the seller's watermark."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from markets.errors import PermanentError
from markets.jobs import JobContext
from markets.market import OrderShape
from markets.watermark import Watermark

__all__ = [
    "day_windows",
    "mark_collected",
    "open_to_repoll",
    "pages",
    "settled_now",
    "since_last",
    "track_open",
    "windows",
]

_DAY = timedelta(days=1)


def windows(start: datetime, end: datetime, span: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive half-open windows of at most `span`."""
    while start < end:
        stop = min(start + span, end)
        yield start, stop
        start = stop


def day_windows(first: date, last: date, span: timedelta) -> Iterator[tuple[date, date]]:
    """The days `first` through `last` (both included) in runs of at most `span` days."""
    days = max(1, span // _DAY)
    while first <= last:
        stop = min(first + timedelta(days=days - 1), last)
        yield first, stop
        first = stop + _DAY


async def pages(
    context: JobContext,
    endpoint: str,
    params: Mapping[str, Any],
    next_page: Callable[[Any], Mapping[str, Any] | None],
    *,
    path: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Any]:
    """Each answer of a paged query: `next_page(answer)` gives the parameters that move to
    the next page (None on the last); a page asked twice is the market's error."""
    cursor: Mapping[str, Any] = {}
    seen: set[tuple[tuple[str, str], ...]] = set()
    while True:
        answer = await context.call(
            endpoint, path=path, params={**params, **cursor}, headers=headers
        )
        yield answer
        following = next_page(answer)
        if not following:
            return
        mark = tuple(sorted((key, str(value)) for key, value in following.items()))
        if mark in seen:
            raise PermanentError(
                "the market repeated a page", market=context.client.name, endpoint=endpoint
            )
        seen.add(mark)
        cursor = following


def _option_span(context: JobContext, option: str, default: timedelta) -> timedelta:
    value = context.client.config.options.get(option)
    if value is None:
        return default
    try:
        return timedelta(seconds=float(value))
    except (ValueError, OverflowError):
        raise PermanentError(
            f"options.{option} must be seconds, not {value!r}", market=context.client.name
        ) from None


def settled_now(context: JobContext, shape: OrderShape) -> datetime:
    """Now minus the market's settling lag (`options.settle_seconds` overrides it)."""
    return datetime.now(UTC) - _option_span(context, "settle_seconds", shape.settle)


async def since_last(
    context: JobContext, what: str, shape: OrderShape
) -> tuple[datetime, datetime]:
    """The incremental window of `what`: from the seller's watermark minus the overlap
    (`options.overlap_seconds`; a first run reads `first_lookback_seconds` back) to the
    settled now, at most `catch_up_seconds` long (the rest is the next run's)."""
    if context.watermarks is None:
        raise PermanentError(
            "collection since the last run needs the watermark store", market=context.client.name
        )
    now = settled_now(context, shape)
    mark = await context.watermarks.get(context.client.name, context.seller, what)
    if mark is None:
        start = now - _option_span(context, "first_lookback_seconds", shape.first_lookback)
    else:
        start = mark - _option_span(context, "overlap_seconds", shape.overlap)
    return start, min(now, start + _option_span(context, "catch_up_seconds", shape.catch_up))


def mark_collected(context: JobContext, what: str, until: datetime) -> None:
    """The seller's watermark of `what` is to move to `until` once the job's result is
    delivered (`Markets.delivered`): a run whose result never reached the sink is read
    again by the next one (docs/DESIGN.md, "Watermarks")."""
    context.watermark = Watermark(what, until)


async def track_open(
    context: JobContext,
    orders: Iterable[tuple[Any, Any]],
    final: frozenset[str],
    *,
    reread: bool = False,
) -> None:
    """Keep the seller's collected orders (id, status) not yet in a `final` status for
    `repoll_orders` (markets/open_orders.py); forget the final ones. `reread`: a repoll's,
    which puts the open ones at the back of the queue."""
    if context.open_orders is None:
        return
    seen = [(str(order), status) for order, status in orders if order is not None]
    await context.open_orders.update(
        context.client.name,
        context.seller,
        open_ids=[order for order, status in seen if status not in final],
        final_ids=[order for order, status in seen if status in final],
        reread=reread,
    )


async def open_to_repoll(context: JobContext, count: int) -> list[str]:
    """Up to `count` of the seller's open orders, tracked longest first."""
    if context.open_orders is None:
        raise PermanentError(
            "repoll without ids needs the open-orders store", market=context.client.name
        )
    return await context.open_orders.oldest(context.client.name, context.seller, count)
