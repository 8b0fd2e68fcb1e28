"""The demo's chart: requests per second at each market, by lane, against the limit.

One panel per run and market: stacked bars per second (high, medium, low) as the
market received them, the limit and the medium and low ceilings as lines.
matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lanes.policy import Lane, LanePolicies
from scripts.demo.load import LIMITS, MARKETS
from scripts.demo.measure import RunTally

__all__ = ["write_chart"]

_COLOURS = {Lane.HIGH: "#d62728", Lane.MEDIUM: "#ff7f0e", Lane.LOW: "#1f77b4"}


def write_chart(path: Path, runs: list[RunTally]) -> Path:
    """Draw `runs` (rows) by market (columns) into a PNG at `path`."""
    policies = LanePolicies()
    figure, axes = plt.subplots(
        len(runs), len(MARKETS), figsize=(12, 3.2 * len(runs)), squeeze=False, sharey="col"
    )
    for row, run in enumerate(runs):
        end = max((moment for values in run.arrivals.values() for moment, _, _ in values),
                  default=run.started + 1)  # fmt: skip
        for column, market in enumerate(MARKETS):
            axis = axes[row][column]
            bottom = [0] * max(1, int(end - run.started) + 1)
            for lane in (Lane.HIGH, Lane.MEDIUM, Lane.LOW):
                counts = run.per_second(market, lane, end + 1)
                counts += [0] * (len(bottom) - len(counts))
                axis.bar(
                    range(len(bottom)),
                    counts[: len(bottom)],
                    width=1.0,
                    bottom=bottom,
                    color=_COLOURS[lane],
                    label=lane.value,
                    align="edge",
                    linewidth=0,
                )
                bottom = [a + b for a, b in zip(bottom, counts, strict=False)]
            limit = LIMITS[market]
            axis.axhline(limit, color="black", linewidth=1.2, label="limit")
            for lane, style in ((Lane.MEDIUM, "--"), (Lane.LOW, ":")):
                ceiling = policies[lane].ceiling
                axis.axhline(ceiling * limit, color=_COLOURS[lane], linestyle=style, linewidth=1,
                             label=f"{lane.value} ceiling ({ceiling:.0%})")  # fmt: skip
            high = run.sent_moments(market, Lane.HIGH)
            if high:
                axis.axvspan(min(high), max(high), color="grey", alpha=0.15, zorder=0,
                             label="high jobs enqueued")  # fmt: skip
            axis.set_title(f"{market}, {run.name} (limit {limit:g}/s)", fontsize=10)
            axis.set_xlabel("seconds")
            axis.set_ylabel("requests/s at the market")
            axis.set_ylim(0, limit * 1.25)
    axes[0][-1].legend(loc="upper right", fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=72)
    plt.close(figure)
    return path
