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
    parsed = lane_of_queue("arn:aws:sqs:ap-northeast-2:123456789012:lanes-naver-low")
    assert parsed == QueueName("lanes", "naver", Lane.LOW)


@pytest.mark.parametrize(
    "bad", ["lanes-naver-urgent", "lanes-naver-low-dlq", "naver", "lanes--low"]
)
def test_other_names_are_refused(bad: str) -> None:
    """Dead-letter queues and names outside the pattern are not lane queues."""
    with pytest.raises(ValueError, match="queue"):
        lane_of_queue(bad)
