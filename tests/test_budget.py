"""The budget's checks: market windows, lane ceilings and the safety margin (no Redis)."""

from __future__ import annotations

import pytest

from lanes import Budget, Check, Window
from lanes.budget import PACE_ABOVE, PACE_BURST


def _budget(limit: int, seconds: float = 1.0, margin_ms: float = 0.0) -> Budget:
    return Budget("acme:orders", (Window(limit=limit, seconds=seconds),), margin_ms=margin_ms)


def test_full_ceiling_checks_only_the_market_window() -> None:
    """High (ceiling 1.0) is held to the market's limit and nothing else."""
    assert _budget(10).checks(1.0) == (Check(10, 1_000_000),)


@pytest.mark.parametrize(("ceiling", "cap"), [(0.8, 8), (0.7, 7), (0.75, 7)])
def test_ceiling_caps_total_usage_rounded_down(ceiling: float, cap: int) -> None:
    """A lane may push the total to ceiling x limit, rounded down so higher lanes keep room."""
    assert _budget(10).checks(ceiling) == (Check(10, 1_000_000), Check(cap, 1_000_000))


def test_ceiling_below_one_request_is_held_over_a_longer_span() -> None:
    """0.7 of 1/s would round to nothing: it becomes 7 per 10 s, still 0.7/s in the long run."""
    assert _budget(1).checks(0.7) == (Check(1, 1_000_000), Check(7, 10_000_000))
    assert _budget(1).checks(0.8) == (Check(1, 1_000_000), Check(4, 5_000_000))


def test_margin_widens_every_window() -> None:
    """The safety margin lengthens each window, so arrivals spread by network delay stay within."""
    assert _budget(10, margin_ms=25).checks(0.7) == (Check(10, 1_025_000), Check(7, 1_025_000))


def test_keys_share_one_cluster_hash_tag() -> None:
    """Every key of a budget carries the same {market:endpoint} hash tag."""
    budget = _budget(10)
    assert budget.log_key == "lanes:{acme:orders}:log"
    assert budget.state_key == "lanes:{acme:orders}:state"


def test_seller_scope_names_the_seller() -> None:
    """Seller-scoped budgets (Coupang counts per vendor) are one budget per seller."""
    windows = (Window(limit=5, seconds=1),)
    budget = Budget.for_endpoint("coupang", "orders", windows, scope="seller", seller="A001")
    assert budget.name == "coupang:orders:A001"
    assert Budget.for_endpoint("naver", "orders", windows).name == "naver:orders"
    with pytest.raises(ValueError, match="per seller"):
        Budget.for_endpoint("coupang", "orders", windows, scope="seller")


def test_several_windows_all_checked() -> None:
    """A budget of 10/s and 500/min checks both windows; the longer one by rank lookups."""
    budget = Budget("acme:orders", (Window(limit=10, seconds=1), Window(limit=500, seconds=60)))
    assert budget.checks(1.0) == (Check(10, 1_000_000), Check(500, 60_000_000, exact=False))
    assert budget.capacity == 10


def test_high_limits_are_paced() -> None:
    """Above PACE_ABOVE per window, admitted moments are also held to PACE_BURST per
    PACE_BURST / rate seconds (no margin), and each lane keeps its exact share of it.
    Pace checks are marked: a caller that woke late may be admitted without them."""
    assert PACE_BURST == 5
    assert _budget(500, margin_ms=25).checks(1.0) == (
        Check(500, 1_025_000),
        Check(5, 10_000, pace=True),
    )
    assert _budget(500).checks(0.7) == (
        Check(500, 1_000_000),
        Check(350, 1_000_000),
        Check(5, 10_000, pace=True),
        Check(7, 20_000, pace=True),  # 0.7 of 5 is 3.5: held exactly over two pace spans
    )
    assert _budget(500).checks(0.8)[-1] == Check(4, 10_000, pace=True)
    assert _budget(500).capacity == 5
    assert _budget(PACE_ABOVE).checks(1.0) == (Check(PACE_ABOVE, 1_000_000),)
    assert _budget(PACE_ABOVE).capacity == PACE_ABOVE
