"""Backfill windows and ids: within each market's longest window, stable, Korean time."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lanes import Lane
from markets import JobRequest
from markets.catalogue import parse_with_catalogues
from markets.config import MarketConfig
from markets.coupang.jobs import KST
from markets.coupang.simulator import coupang_app
from markets.naver.simulator import naver_app
from markets.registry import MARKETS
from scripts.tools.backfill import id_jobs, window_jobs
from scripts.tools.inputs import UsageError, parse_day_or_moment, parse_duration
from scripts.tools.sending import group_id
from tests.fixtures_markets import COUPANG_VENDOR, MakeMarkets, StartSimulator, markets_config


def _market(catalogue: str | None) -> MarketConfig:
    table: dict[str, object] = {"base_url": "http://127.0.0.1:9"}
    if catalogue:
        table["catalogue"] = catalogue
    else:
        table["endpoints"] = {"orders": {"path": "/orders", "rps": 1}}
    return parse_with_catalogues({"markets": {"m": table}}, "test").market("m")


def _payloads(jobs: object) -> list[dict[str, Any]]:
    return [json.loads(body)["payload"] for _, body in jobs]  # type: ignore[attr-defined]


def test_naver_windows_are_capped_at_24_hours_in_korean_time() -> None:
    """A 2-day step becomes 24 h; a naive day starts at midnight KST; `--until` day included."""
    jobs = window_jobs(
        "naver", _market("naver"), "S1", date(2025, 1, 1), date(2025, 1, 2), timedelta(days=2)
    )
    assert _payloads(jobs) == [
        {"since": "2025-01-01T00:00:00+09:00", "until": "2025-01-02T00:00:00+09:00"},
        {"since": "2025-01-02T00:00:00+09:00", "until": "2025-01-03T00:00:00+09:00"},
    ]
    assert MARKETS["naver"].orders.max_span == timedelta(hours=24)


def test_coupang_takes_whole_days_in_windows_of_at_most_31() -> None:
    """Coupang windows are days (both ends included), 31 at most by default, shorter with a
    step; a 12-hour step is refused."""
    market = _market("coupang")
    payloads = _payloads(
        window_jobs("coupang", market, "A1", date(2025, 1, 1), date(2025, 3, 1), None)
    )
    assert [(p["since"], p["until"]) for p in payloads] == [
        ("2025-01-01", "2025-01-31"),
        ("2025-02-01", "2025-03-01"),
    ]
    daily = _payloads(
        window_jobs("coupang", market, "A1", date(2025, 1, 30), date(2025, 2, 1), timedelta(days=1))
    )
    assert [p["since"] for p in daily] == ["2025-01-30", "2025-01-31", "2025-02-01"]
    assert all(p["since"] == p["until"] for p in daily)
    with pytest.raises(UsageError, match="whole days"):
        list(window_jobs("coupang", market, "A1", date(2025, 1, 1), date(2025, 1, 2),
                         timedelta(hours=12)))  # fmt: skip


def test_statuses_go_into_every_window_and_into_the_id() -> None:
    """`statuses` narrows each job; the same window with other statuses is another job."""
    market = _market("coupang")
    every = list(window_jobs("coupang", market, "A1", date(2025, 1, 1), date(2025, 1, 2), None))
    some = list(
        window_jobs("coupang", market, "A1", date(2025, 1, 1), date(2025, 1, 2), None, ["INSTRUCT"])
    )
    assert "statuses" not in _payloads(every)[0]
    assert _payloads(some)[0]["statuses"] == ["INSTRUCT"]
    assert json.loads(every[0][1])["id"] != json.loads(some[0][1])["id"]


def test_a_market_without_catalogue_has_no_backfill() -> None:
    """Backfill needs to know the market's order query: a plain market is refused clearly."""
    with pytest.raises(UsageError, match="built-in catalogue"):
        list(window_jobs("m", _market(None), "S", date(2025, 1, 1), date(2025, 1, 2), None))


def test_ids_file_jobs_fill_the_catalogue_field_and_skip_blank_lines(tmp_path: Path) -> None:
    """Coupang ids are shipment boxes, Naver's are order ids; ids are stable per order."""
    ids = tmp_path / "ids.txt"
    ids.write_text("101\n\n102\n")
    coupang = list(id_jobs("coupang", _market("coupang"), "A1", ids))
    naver = list(id_jobs("naver", _market("naver"), "S1", ids))
    assert [where for where, _ in coupang] == [f"{ids}:1", f"{ids}:3"]
    assert _payloads(coupang) == [{"shipment_box_id": "101"}, {"shipment_box_id": "102"}]
    assert _payloads(naver)[0] == {"order_id": "101"}
    again = list(id_jobs("coupang", _market("coupang"), "A1", ids))
    assert again == coupang


def test_durations_and_dates_parse_or_say_what_is_wrong() -> None:
    """`12h`, `1d`, `90s`; a date or an ISO moment; anything else is a one-line UsageError."""
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("1.5d") == timedelta(hours=36)
    assert parse_day_or_moment("2025-01-01") == date(2025, 1, 1)
    assert parse_day_or_moment("2025-01-01T09:00:00+09:00") == datetime.fromisoformat(
        "2025-01-01T09:00:00+09:00"
    )
    for bad in ("soon", "0s", "5 weeks"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    with pytest.raises(UsageError, match="bad date"):
        parse_day_or_moment("yesterday")


def test_group_ids_are_the_seller_or_a_stable_hash() -> None:
    """A seller SQS accepts as MessageGroupId is used as is; others become a stable hash."""
    assert group_id("A00012345") == "A00012345"
    hashed = group_id("판매자 1")
    assert hashed == group_id("판매자 1") != group_id("판매자 2")
    assert hashed.isascii()
    assert len(hashed) <= 128


# -- orders on the windows' boundaries, against the simulators ----------------------------

_MIDNIGHT_KST = datetime(2025, 7, 1, tzinfo=KST)


async def test_naver_orders_on_window_boundaries_come_in_one_window_only(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Issue 18: Naver's lastChangedTo is inclusive. 24 product orders change in threes at
    exactly 00:00, 06:00, 12:00 and 18:00 KST over two days; a backfill in 6-hour windows
    collects each once (the old windows shared their boundary: 45 collected, 21 twice)."""
    sim = await start_simulator(naver_app(rate=50, orders=24, start=_MIDNIGHT_KST, days=2))
    fast = {"endpoints": {"changed_orders": {"rps": 50}, "order_details": {"rps": 50}}}
    config = markets_config(naver=sim.url, extra={"naver": fast})
    markets = await make_markets(config)
    jobs = window_jobs(
        "naver", config.market("naver"), "s", date(2025, 7, 1), date(2025, 7, 2), timedelta(hours=6)
    )
    seen: list[str] = []
    for payload in _payloads(jobs):
        result = await markets.run(JobRequest("collect_orders", "naver", "s", payload), Lane.LOW)
        seen += [change["productOrderId"] for change in result.data["statuses"]]
    assert len(seen) == len(set(seen)) == 24


async def test_coupang_orders_at_midnight_come_in_their_own_day_only(
    start_simulator: StartSimulator, make_markets: MakeMarkets
) -> None:
    """Coupang windows are whole days, both ends included, never sharing a day: an order
    placed at exactly 00:00 KST is in its day's window only."""
    sim = await start_simulator(coupang_app(orders=6, start=_MIDNIGHT_KST, days=6))
    config = markets_config(coupang=sim.url, extra={"coupang": {"groups": {"vendor": {"rps": 20}}}})
    markets = await make_markets(config)
    jobs = window_jobs(
        "coupang",
        config.market("coupang"),
        COUPANG_VENDOR,
        date(2025, 7, 1),
        date(2025, 7, 6),
        timedelta(days=1),
    )
    seen: list[int] = []
    for payload in _payloads(jobs):
        request = JobRequest("collect_orders", "coupang", COUPANG_VENDOR, payload)
        result = await markets.run(request, Lane.LOW)
        seen += [order["shipmentBoxId"] for order in result.data["orders"]]
    assert sorted(seen) == [600_000_000 + index for index in range(6)]
