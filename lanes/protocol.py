"""How Python speaks to the budget's Lua scripts: their positional KEYS and ARGV, the
log's member format, and the state hash's rate scales.

Built here only, beside the algorithm (`lanes.budget`): a change to `acquire.lua`'s or
`pause.lua`'s ARGV is made in the script's header and in one function below.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources

from redis.exceptions import RedisError

from lanes.budget import Budget, Check
from lanes.errors import BudgetUnavailable
from lanes.policy import Lane, LanePolicies

__all__ = [
    "US",
    "Call",
    "acquire_call",
    "advertised_scale",
    "lane_checks",
    "lua",
    "member",
    "member_lane",
    "pause_call",
    "slow_scale",
    "unavailable",
]

US = 1_000_000

# A script's KEYS and ARGV, in order.
Call = tuple[list[str], list[int | str]]


def lua(name: str) -> str:
    """A script's source, from the package (importlib.resources)."""
    return resources.files("lanes").joinpath(name).read_text(encoding="utf-8")


@contextmanager
def unavailable(budget: Budget) -> Iterator[None]:
    """Every Redis failure is `BudgetUnavailable`: nothing is admitted without Redis."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BudgetUnavailable(f"budget {budget.name}: redis unavailable: {exc}") from exc


def member(lane: Lane, token: str, request: int, unit: int) -> str:
    """A log entry: "lane:token:r:unit" (acquire.lua writes it, `member_lane` reads it)."""
    return f"{lane.value}:{token}:{request}:{unit}"


def member_lane(entry: str) -> Lane:
    return Lane(entry.split(":", 1)[0])


def lane_checks(
    budget: Budget, policies: LanePolicies, lane: Lane, unpaced: bool
) -> tuple[Check, ...]:
    """The checks of `lane`; `unpaced` leaves out the pace's (not the market's rule)."""
    checks = budget.checks(policies[lane].ceiling)
    if unpaced:
        checks = tuple(check for check in checks if not check.pace)
    return checks


def acquire_call(
    budget: Budget,
    policies: LanePolicies,
    requests: Sequence[tuple[Lane, int]],
    horizons: Mapping[Lane, float],
    *,
    token: str,
    keep_us: int,
    prune: bool,
    restart_guard: bool,
    give_back: Sequence[str] = (),
    unpaced: bool = False,
) -> Call:
    """acquire.lua's KEYS and ARGV (its header names each) for `requests` (lane, cost),
    lanes in order of first appearance (a request names its lane by that index)."""
    lanes = list(dict.fromkeys(lane for lane, _ in requests))
    args: list[int | str] = [token, keep_us, int(prune), int(restart_guard), len(lanes)]
    for lane in lanes:
        checks = lane_checks(budget, policies, lane, unpaced)
        args += [lane.value, round(horizons[lane] * US), len(checks)]
        for check in checks:
            args += [check.cap, check.span_us, int(check.exact)]
    args.append(len(requests))
    for lane, cost in requests:
        args += [lanes.index(lane) + 1, cost]
    args += [len(give_back), *give_back]
    args += _lend_args(budget, policies, lanes, unpaced)
    keys = [budget.log_key, budget.state_key, budget.epoch_key, budget.demand_key]
    if budget.bucket is not None:  # the BUCKET block, last of ARGV and KEYS
        interval_us = math.ceil(US / budget.bucket.refill_per_second)
        args += [1, interval_us, budget.bucket.size, round(budget.margin_ms * 1000)]
        args += [budget.bucket_cap(policies[lane].ceiling) for lane in lanes]
        keys.append(budget.bucket_key)
    return keys, args


def _lend_args(
    budget: Budget, policies: LanePolicies, lanes: Sequence[Lane], unpaced: bool
) -> list[int]:
    """The lending block (docs/DESIGN.md rule 2, "Lending"): per lane its ceiling,
    whether its calls mark demand (every lane above the lowest ceiling), and which of
    its checks lending lifts."""
    if not budget.lend_idle:
        args = [0, 0, 0]
        for lane in lanes:
            checks = lane_checks(budget, policies, lane, unpaced)
            args += [0, 0, *(0 for _ in checks)]
        return args
    lowest = min(policies[lane].ceiling for lane in Lane)
    args = [1, budget.lend_hold_us, budget.lend_reach_us]
    for lane in lanes:
        ceiling = policies[lane].ceiling
        checks = lane_checks(budget, policies, lane, unpaced)
        args += [round(ceiling * US), int(ceiling > lowest)]
        args += [int(lent) for lent in budget.lent(ceiling, checks)]
    return args


def pause_call(
    budget: Budget,
    kind: str,
    channel: str,
    *,
    asked_ms: int,
    base_ms: int = 0,
    most_ms: int = 0,
    admitted_us: int = 0,
    slowdown_ppm: int = US,
    slowdown_ms: int = 0,
) -> Call:
    """pause.lua's KEYS and ARGV: a "rate" cooldown after a 429, or a "quota" pause."""
    keys = [budget.log_key, budget.state_key]
    args: list[int | str] = [
        kind, budget.name, channel, asked_ms, base_ms, most_ms, admitted_us,
        round(budget.shortest_seconds * US), slowdown_ppm, slowdown_ms,
    ]  # fmt: skip
    return keys, args


def advertised_scale(state: Mapping[str, str], now_us: int) -> int | None:
    """The share of the configured limit (ppm) a market advertised, while it holds."""
    if int(state.get("adv_until", "0")) <= now_us:
        return None
    return int(state["adv_ppm"])


def slow_scale(state: Mapping[str, str], now_us: int) -> float | None:
    """The slowdown after a 429 (ppm of the limit) as grown back by now: it doubles every
    `slow_step` from the cooldown's end (None: no slowdown). The same formula is in Lua
    where the scripts apply it: `slow_scale` in pause.lua and the caps' scale in
    acquire.lua."""
    step = int(state.get("slow_step", "0"))
    if step <= 0:
        return None
    return int(state["slow_ppm"]) * 2 ** (max(0, now_us - int(state["slow_from"])) / step)
