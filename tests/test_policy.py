"""Lane policies: the design's defaults, partial overrides, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lanes import DEFAULT_POLICIES, Lane, LanePolicies


def test_defaults_are_the_design_table() -> None:
    """high 100 % until success, medium 80 % until success, low 70 % with 3 attempts."""
    assert [DEFAULT_POLICIES[lane].ceiling for lane in Lane] == [1.0, 0.8, 0.7]
    assert [DEFAULT_POLICIES[lane].max_attempts for lane in Lane] == [None, None, 3]
    assert [DEFAULT_POLICIES[lane].weight for lane in Lane] == [6, 3, 1]


def test_partial_table_keeps_other_fields() -> None:
    """Overriding one field of a lane keeps that lane's other defaults."""
    policies = LanePolicies.model_validate({"low": {"max_attempts": 5}})
    assert policies[Lane.LOW].max_attempts == 5
    assert policies[Lane.LOW].ceiling == 0.7


@pytest.mark.parametrize(
    "bad", [{"low": {"ceiling": 0}}, {"low": {"max_attempts": 0}}, {"urgent": {}}]
)
def test_invalid_policy_is_refused(bad: dict[str, object]) -> None:
    """Ceilings in (0, 1], attempts of at least one, and only the three lanes."""
    with pytest.raises(ValidationError):
        LanePolicies.model_validate(bad)
