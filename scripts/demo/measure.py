"""What `lanes demo` measured in one run, and the figures it derives.

Requests are counted where the market sees them (the simulators' arrival logs,
`scripts.demo.sim`), each attributed to its lane by its route (`ROUTE_LANES`).
A job's wait is from the moment the demo sent its message to the moment the
worker recorded it done (the results sink): enqueue to the market's answer.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from lanes.policy import Lane
from scripts.demo.load import LIMITS, ROUTE_LANES, Planned

__all__ = ["CHECK_SECONDS", "SHARE_TOLERANCE", "LaneFigures", "RunTally", "peak_in_window"]

CHECK_SECONDS = 10.0
SHARE_TOLERANCE = 0.05  # of the limit: arrival jitter at the busiest window's two ends


def peak_in_window(moments: list[float], seconds: float = 1.0) -> int:
    """The most moments in any trailing window of `seconds` (what a market counts)."""
    ordered = sorted(moments)
    best = start = 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


@dataclass(frozen=True)
class LaneFigures:
    sent: int
    done: int
    dead: int
    left: int
    lost: int
    wait_p50: float | None
    wait_p95: float | None
    share: float  # of the limit, averaged over the seconds the lane sent requests
    rate_limited: int


@dataclass
class RunTally:
    """One run of the burst: what was sent, what the markets saw, how jobs ended."""

    name: str
    started: float = 0.0  # wall clock of the first send
    jobs: dict[str, Planned] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    done_at: dict[str, float] = field(default_factory=dict)
    dead: dict[str, str] = field(default_factory=dict)  # id -> reason
    left: set[str] = field(default_factory=set)
    # (market, queue's lane) -> messages still invisible in it when the run ended
    hidden: Counter[tuple[str, Lane]] = field(default_factory=Counter)
    # market -> [(wall-clock time, lane or None, status)]
    arrivals: dict[str, list[tuple[float, Lane | None, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add_arrivals(self, market: str, entries: list[tuple[float, str, int]]) -> None:
        """Entries of a simulator's arrival log (JSON: [time, route name, status])."""
        routes = ROUTE_LANES[market]
        for moment, route, status in entries:
            self.arrivals[market].append((float(moment), routes.get(route), int(status)))

    def sent_moments(self, market: str, lane: Lane) -> list[float]:
        """When the lane's messages were sent, in seconds from the start."""
        return [
            at - self.started
            for job_id, at in self.sent_at.items()
            if (self.jobs[job_id].market, self.jobs[job_id].lane) == (market, lane)
        ]

    def lane_moments(self, market: str, lanes: set[Lane]) -> list[float]:
        return [moment for moment, lane, _ in self.arrivals[market] if lane in lanes]

    def rate_limited(self, market: str, lane: Lane | None = None) -> int:
        return sum(
            1
            for _, each, status in self.arrivals[market]
            if status == 429 and (lane is None or each is lane)
        )

    def first_refusal(self, market: str) -> tuple[float, int] | None:
        """When the market first answered 429 (seconds into the run), and how many requests
        it had received in the second before: what to look at when the limit broke."""
        arrivals = sorted(self.arrivals[market])
        refused = next((moment for moment, _, status in arrivals if status == 429), None)
        if refused is None:
            return None
        before = sum(1 for moment, _, _ in arrivals if refused - 1.0 < moment <= refused)
        return refused - self.started, before

    def per_second(self, market: str, lane: Lane, until: float) -> list[int]:
        """Requests of `lane` that reached `market` in each second since the start."""
        bins = [0] * max(1, math.ceil(until - self.started))
        for moment, each, _ in self.arrivals[market]:
            index = int(moment - self.started)
            if each is lane and 0 <= index < len(bins):
                bins[index] += 1
        return bins

    def recent_rate(self, market: str, lane: Lane | None, now: float, span: float = 2.0) -> float:
        """Requests per second over the last `span` seconds (all lanes for None)."""
        count = sum(
            1
            for moment, each, _ in self.arrivals[market]
            if now - span < moment <= now and each is not None and (lane is None or each is lane)
        )
        return count / span

    def counts(self, market: str, lane: Lane) -> tuple[int, int, int]:
        """(sent, done, dead-lettered) so far."""
        ids = [
            job_id for job_id, job in self.jobs.items() if (job.market, job.lane) == (market, lane)
        ]
        sent = sum(1 for job_id in ids if job_id in self.sent_at)
        done = sum(1 for job_id in ids if job_id in self.done_at)
        dead = sum(1 for job_id in ids if job_id in self.dead)
        return sent, done, dead

    def figures(self, market: str, lane: Lane) -> LaneFigures:
        ids = [
            job_id for job_id, job in self.jobs.items() if (job.market, job.lane) == (market, lane)
        ]
        sent = [job_id for job_id in ids if job_id in self.sent_at]
        done = [job_id for job_id in sent if job_id in self.done_at]
        dead = [job_id for job_id in sent if job_id in self.dead and job_id not in self.done_at]
        left = [job_id for job_id in sent if job_id in self.left and job_id not in self.done_at]
        waits = sorted(self.done_at[job_id] - self.sent_at[job_id] for job_id in done)
        moments = self.lane_moments(market, {lane})
        active = {int(moment) for moment in moments}
        share = len(moments) / (len(active) * LIMITS[market]) if active else 0.0
        return LaneFigures(
            sent=len(sent),
            done=len(done),
            dead=len(dead),
            left=len(left) + self.hidden[(market, lane)],
            lost=max(
                0, len(sent) - len(done) - len(dead) - len(left) - self.hidden[(market, lane)]
            ),
            wait_p50=_percentile(waits, 0.50),
            wait_p95=_percentile(waits, 0.95),
            share=share,
            rate_limited=self.rate_limited(market, lane),
        )

    def ceiling_checks(self, market: str) -> list[tuple[str, float, float]]:
        """(lanes, share of the limit in their busiest CHECK_SECONDS, ceiling) for low,
        low+medium and all lanes: docs/DESIGN.md rule 2, ceilings on the total. Measured
        over several seconds because a request reaches a simulator on a busy host late by
        a varying fraction of a second; the limit per second is the simulators' to check
        (they answer 429), and holds within SHARE_TOLERANCE."""
        capacity = LIMITS[market] * CHECK_SECONDS
        checks = (("low", {Lane.LOW}, 0.7), ("low+medium", {Lane.LOW, Lane.MEDIUM}, 0.8),
                  ("all lanes", set(Lane), 1.0))  # fmt: skip
        return [
            (label, peak_in_window(self.lane_moments(market, lanes), CHECK_SECONDS) / capacity,
             ceiling)
            for label, lanes, ceiling in checks
        ]  # fmt: skip

    def totals(self) -> Counter[str]:
        """Messages by how they ended, all markets together; messages still invisible in a
        queue when the run ended count as left there, not lost."""
        found: Counter[str] = Counter()
        for job_id in self.sent_at:
            if job_id in self.done_at:
                found["done"] += 1
            elif job_id in self.dead:
                found["dead"] += 1
            elif job_id in self.left:
                found["left"] += 1
            else:
                found["lost"] += 1
        hidden = min(found["lost"], sum(self.hidden.values()))
        found["left"] += hidden
        found["lost"] -= hidden
        return found
