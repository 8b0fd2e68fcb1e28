"""Queue names: {prefix}-{market}-{lane} and -dlq, parsed back from names and ARNs."""

from __future__ import annotations

import pytest

from lanes import Lane
from worker.queues import QueueName, lane_of_queue


def test_names_follow_the_contract() -> None:
    """Lane queue and dead-letter queue names are as docs/DESIGN.md says."""
    name = QueueName("lanes", "coupang", Lane.HIGH)
    assert name.queue == "lanes-coupang-high"
    assert name.dead_letter == "lanes-coupang-high-dlq"


def test_lane_from_event_source_arn() -> None:
    """Lambda's eventSourceARN ends in the queue name, which gives market and lane."""
    parsed = lane_of_queue(
        "arn:aws:sqs:ap-northeast-2:123456789012:lanes-naver-low", prefix="lanes"
    )
    assert parsed == QueueName("lanes", "naver", Lane.LOW)


@pytest.mark.parametrize(
    ("prefix", "market"),
    [("shop-prod", "acme"), ("shop-prod", "acme-kr"), ("a-b-c", "x"), ("lanes", "my-market")],
)
def test_hyphenated_prefixes_and_markets_parse_back(prefix: str, market: str) -> None:
    """Issue 12 (4): `shop-prod-acme-high` is market `acme` under prefix `shop-prod`, for every
    allowed prefix: the name is parsed against the configured prefix, not split on '-'."""
    for lane in Lane:
        name = QueueName(prefix, market, lane)
        parsed = lane_of_queue(f"arn:aws:sqs:us-east-1:1:{name.queue}", prefix=prefix)
        assert parsed == name
        assert lane_of_queue(name.queue, prefix=prefix, markets={market, "other"}) == name


def test_a_queue_of_another_prefix_or_unknown_market_is_refused() -> None:
    """A queue outside the prefix, or naming a market that is not configured, is refused."""
    with pytest.raises(ValueError, match="queue"):
        lane_of_queue("shop-dev-acme-high", prefix="shop-prod")
    with pytest.raises(ValueError, match="not configured"):
        lane_of_queue("shop-prod-acme-high", prefix="shop-prod", markets={"naver"})


@pytest.mark.parametrize(
    "bad", ["lanes-naver-urgent", "lanes-naver-low-dlq", "naver", "lanes--low"]
)
def test_other_names_are_refused(bad: str) -> None:
    """Dead-letter queues and names outside the pattern are not lane queues."""
    with pytest.raises(ValueError, match="queue"):
        lane_of_queue(bad, prefix="lanes")
