"""`Markets.check`: a request is judged once, before anything is sent."""

from __future__ import annotations

import pytest

from lanes import Lane
from markets import JOB_KINDS, JobRequest, Markets, PermanentError
from markets.registry import MARKETS
from tests.fixtures_markets import MakeMarkets, acme_config, markets_config, scripted_table


@pytest.fixture
async def markets(make_markets: MakeMarkets) -> Markets:
    config = markets_config(coupang="http://127.0.0.1:9", naver="http://127.0.0.1:9")
    extra = acme_config(scripted_table("http://127.0.0.1:9")).markets
    return await make_markets(config.model_copy(update={"markets": {**config.markets, **extra}}))


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (JobRequest("call", "ebay", "s", {"endpoint": "x"}), "unknown market 'ebay'"),
        (JobRequest("dance", "coupang", "s", {}), "kind 'dance' is not offered"),
        (JobRequest("collect_orders", "acme", "s", {}), r"offered: call\)"),
        (JobRequest("call", "acme", "s", {"endpoint": "nope"}), "unknown endpoint 'nope'"),
        (JobRequest("call", "acme", "s", {}), "endpoint: Field required"),
        (JobRequest("call", "coupang", "", {"endpoint": "orders"}), "needs a seller"),
    ],
)
def test_check_refuses_bad_requests_in_one_line(
    markets: Markets, request_: JobRequest, message: str
) -> None:
    """Unknown market, kind or endpoint, a bad payload, a missing seller: PermanentError."""
    with pytest.raises(PermanentError, match=message) as raised:
        markets.check(request_)
    assert "\n" not in str(raised.value)


def test_check_accepts_every_kind_for_both_catalogues(markets: Markets) -> None:
    """Each documented kind exists for Coupang and Naver."""
    assert set(JOB_KINDS) == {
        "call",
        "collect_orders",
        "collect_order",
        "ship_order",
        "answer_inquiry",
        "get_product",
        "update_product",
        "collect_inquiries",
        "collect_claims",
        "repoll_orders",
        "acknowledge_orders",
        "act_on_claim",
        "collect_call_center_inquiries",
        "answer_call_center_inquiry",
        "collect_qnas",
    }
    markets.check(JobRequest("get_product", "coupang", "A1", {"seller_product_id": 1}))
    markets.check(JobRequest("get_product", "naver", "", {"origin_product_no": 1}))


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (JobRequest("call", "acme", "s", {"endpoint": "post"}), True),
        (JobRequest("call", "acme", "s", {"endpoint": "answer"}), False),
        (JobRequest("call", "coupang", "s", {"endpoint": "invoices"}), True),
        (JobRequest("get_product", "coupang", "s", {"seller_product_id": 1}), False),
    ],
)
def test_a_checked_job_knows_whether_it_is_a_side_effect(
    markets: Markets, request_: JobRequest, expected: bool
) -> None:
    """Non-GET calls change things, GET calls and reads do not: judged once, by `check`."""
    assert markets.check(request_).side_effect is expected


@pytest.mark.parametrize(
    ("catalogue", "kind", "expected"),
    [
        ("coupang", "ship_order", True),
        ("naver", "answer_inquiry", True),
        ("naver", "update_product", True),
        ("coupang", "collect_orders", False),
        ("naver", "get_product", False),
    ],
)
def test_ship_answer_and_update_are_side_effects(catalogue: str, kind: str, expected: bool) -> None:
    """The spec a checked job carries says whether its kind changes things at the market."""
    assert MARKETS[catalogue].jobs[kind].side_effect is expected


def test_a_call_to_an_unknown_market_or_without_endpoint_is_refused(markets: Markets) -> None:
    """What cannot be judged is refused by `check` (one line), never guessed."""
    for request_ in (
        JobRequest("call", "ebay", "s", {"endpoint": "x"}),
        JobRequest("call", "acme", "s", {}),
    ):
        with pytest.raises(PermanentError):
            markets.check(request_)


async def test_run_refuses_an_invalid_request_without_io(markets: Markets) -> None:
    """`run` checks first: an unknown kind fails at once (the market here is unreachable)."""
    with pytest.raises(PermanentError):
        await markets.run(JobRequest("dance", "coupang", "s", {}), Lane.HIGH)


async def test_aclose_is_idempotent(markets: Markets) -> None:
    """Closing twice is safe, and a closed Markets makes no new client."""
    markets.client("acme")
    await markets.aclose()
    await markets.aclose()
    with pytest.raises(RuntimeError):
        markets.client("coupang")
