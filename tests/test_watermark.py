"""Collection watermarks in Redis: per (market, seller, what), only ever forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lanes import RedisStore
from markets.watermark import Watermarks


async def test_a_watermark_moves_forward_never_back(store: RedisStore) -> None:
    """Two overlapping runs may finish in any order: the later moment stays."""
    marks = Watermarks(store.client)
    assert await marks.get("naver", "s-1", "orders") is None
    later = datetime(2025, 7, 2, tzinfo=UTC)
    await marks.advance("naver", "s-1", "orders", later)
    await marks.advance("naver", "s-1", "orders", later - timedelta(hours=1))
    assert await marks.get("naver", "s-1", "orders") == later


async def test_watermarks_are_per_market_seller_and_collection(store: RedisStore) -> None:
    marks = Watermarks(store.client)
    moment = datetime(2025, 7, 2, tzinfo=UTC)
    await marks.advance("naver", "s-1", "orders", moment)
    assert await marks.get("naver", "s-2", "orders") is None
    assert await marks.get("naver", "s-1", "claims") is None
    assert await marks.get("coupang", "s-1", "orders") is None
