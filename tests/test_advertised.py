"""Reading the rate limits markets advertise in their headers."""

from __future__ import annotations

from multidict import CIMultiDict

from markets.advertised import Advertised, read_advertised, read_bucket_level, read_usage_percent


def test_naver_gateway_headers() -> None:
    """GNCP-GW-RateLimit-*: rate, burst and remaining, headers matched in any case."""
    headers = CIMultiDict(
        {
            "gncp-gw-ratelimit-replenish-rate": "2",
            "GNCP-GW-RateLimit-Burst-Capacity": "4",
            "GNCP-GW-RateLimit-Remaining": "3",
        }
    )
    assert read_advertised(headers) == Advertised(
        source="GNCP-GW-RateLimit", rate=2.0, burst=4.0, remaining=3.0
    )


def test_ietf_policy_gives_a_rate() -> None:
    """RateLimit-Policy q/w is a rate; RateLimit r and t are remaining and reset."""
    headers = CIMultiDict(
        {"RateLimit-Policy": '"default";q=100;w=10', "RateLimit": '"default";r=50;t=30'}
    )
    assert read_advertised(headers) == Advertised(
        source="RateLimit", rate=10.0, limit=100.0, remaining=50.0, reset=30.0
    )


def test_x_ratelimit_has_no_window_so_no_rate() -> None:
    """X-RateLimit-Limit says how many, not per how long: logged, no rate claimed."""
    headers = CIMultiDict({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59"})
    assert read_advertised(headers) == Advertised(source="X-RateLimit", limit=60.0, remaining=59.0)


def test_nothing_advertised() -> None:
    """No known header: None."""
    assert read_advertised(CIMultiDict({"Content-Type": "application/json"})) is None


def test_cafe24s_bucket_level_is_read_as_used_of_size() -> None:
    """`X-Api-Call-Limit: used/size` (Cafe24) is the bucket's level; anything else, or a
    size of 0, is no level."""
    assert read_bucket_level({"X-Api-Call-Limit": "12/40"}) == (12, 40)
    assert read_bucket_level({"X-Api-Call-Limit": " 40 / 40 "}) == (40, 40)
    for wrong in ("12", "a/40", "3/0", "-1/40", ""):
        assert read_bucket_level({"X-Api-Call-Limit": wrong}) is None
    assert read_bucket_level({}) is None


def test_a_usage_limit_is_read_as_percent_spent() -> None:
    """Cafe24's `X-Cafe24-Call-Usage` (the mall-wide usage limit) is the share spent, in
    percent; absent or not a number it is None."""
    name = "X-Cafe24-Call-Usage"
    assert read_usage_percent(CIMultiDict({"x-cafe24-call-usage": "93.50"}), name) == 93.5
    assert read_usage_percent({name: "90%"}, name) == 90.0
    for wrong in ("", "lots", "nan"):
        assert read_usage_percent({name: wrong}, name) is None
    assert read_usage_percent({}, name) is None
