"""Windows of at most a market's span, with nothing between them and nothing twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from markets.paging import day_windows, windows


def test_moment_windows_are_consecutive_and_at_most_the_span() -> None:
    start = datetime(2025, 7, 1, tzinfo=UTC)
    cut = list(windows(start, start + timedelta(hours=50), timedelta(hours=24)))
    assert [(b - a) for a, b in cut] == [timedelta(hours=24)] * 2 + [timedelta(hours=2)]
    assert all(cut[n][1] == cut[n + 1][0] for n in range(len(cut) - 1))
    assert list(windows(start, start, timedelta(hours=1))) == []


def test_day_windows_include_both_ends_and_hold_at_most_the_span() -> None:
    cut = list(day_windows(date(2025, 7, 1), date(2025, 8, 31), timedelta(days=31)))
    assert cut == [(date(2025, 7, 1), date(2025, 7, 31)), (date(2025, 8, 1), date(2025, 8, 31))]
    one = list(day_windows(date(2025, 7, 1), date(2025, 7, 1), timedelta(days=31)))
    assert one == [(date(2025, 7, 1), date(2025, 7, 1))]
