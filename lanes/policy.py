"""The three lanes and what each may do: ceiling, attempts, weight, slot floor."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_POLICIES", "Lane", "LanePolicies", "LanePolicy"]


class Lane(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class LanePolicy(BaseModel):
    """How one lane shares a budget and how its failures are retried.

    `ceiling`: the share of a budget's *total* usage (all lanes) up to which this
    lane may push it. `max_attempts`: None retries transient failures until
    success; a number dead-letters after that many attempts. `weight`: the
    lane's share of the dispatcher's picks. `min_slots`: worker slots this lane
    may always use, so it is never starved of concurrency.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    ceiling: float = Field(gt=0, le=1)
    max_attempts: int | None = Field(default=None, ge=1)
    weight: int = Field(default=1, ge=0)
    min_slots: int = Field(default=1, ge=0)


class LanePolicies(BaseModel):
    """The policy of each lane; a TOML `[lanes.X]` table overrides single fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    high: LanePolicy = LanePolicy(ceiling=1.0, weight=6)
    medium: LanePolicy = LanePolicy(ceiling=0.8, weight=3)
    low: LanePolicy = LanePolicy(ceiling=0.7, max_attempts=3, weight=1)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: object) -> object:
        # A partial `[lanes.low]` table keeps the defaults of the fields it omits.
        if not isinstance(data, dict):
            return data
        merged: dict[str, object] = {}
        for lane in Lane:
            given = data.get(lane.value)
            if isinstance(given, dict):
                default = cls.model_fields[lane.value].default
                merged[lane.value] = {**default.model_dump(), **given}
            elif given is not None:
                merged[lane.value] = given
        extra = set(data) - {lane.value for lane in Lane}
        merged.update({key: data[key] for key in extra})
        return merged

    def __getitem__(self, lane: Lane) -> LanePolicy:
        policy: LanePolicy = getattr(self, lane.value)
        return policy


DEFAULT_POLICIES = LanePolicies()
