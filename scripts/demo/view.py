"""What `lanes demo` shows: the live per-lane view and the closing summary.

On a terminal the live view is a rich table redrawn in place; elsewhere (a pipe,
a CI log) it is one plain line every few seconds.
"""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lanes.policy import Lane, LanePolicies
from scripts.demo.load import LIMITS, MARKET_RATES, MARKETS
from scripts.demo.measure import CHECK_SECONDS, SHARE_TOLERANCE, LaneFigures, RunTally
from scripts.tools.table import render_table

__all__ = ["LiveView", "render_summary"]

_PLAIN_EVERY = 5.0
_BAR = 24
_POLICIES = LanePolicies()


def _bar(rate: float, ceiling: float, limit: float) -> str:
    """Requests per second as a bar on the scale of the limit, `|` at the lane's ceiling."""
    cells = ["#" if index < round(rate / limit * _BAR) else "." for index in range(_BAR)]
    mark = min(_BAR - 1, round(ceiling / limit * _BAR) - 1)
    if cells[mark] == ".":
        cells[mark] = "|"
    return "".join(cells)


class LiveView:
    """`start()`, `refresh()` after each measurement, `stop()` (also when interrupted)."""

    def __init__(self, tally: RunTally, out: TextIO) -> None:
        self._tally = tally
        self._out = out
        self._live: Live | None = None
        self._printed = 0.0
        if out.isatty():
            self._live = Live(console=Console(file=out), auto_refresh=False, transient=False)

    def start(self) -> None:
        if self._live is not None:
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()

    def refresh(self) -> None:
        now = time.time()
        if self._live is not None:
            self._live.update(self._table(now), refresh=True)
        elif now - self._printed >= _PLAIN_EVERY:
            self._printed = now
            print(self._line(now), file=self._out, flush=True)

    def _table(self, now: float) -> Table:
        tally = self._tally
        table = Table(title=f"{tally.name}: {now - tally.started:4.0f} s", title_justify="left")
        for column in ("market", "lane", "req/s", "ceiling", "of the limit", "sent", "done", "DLQ"):
            table.add_column(column, justify="left" if column in ("market", "lane") else "right")
        table.columns[4].justify = "left"
        for market in MARKETS:
            limit = LIMITS[market]
            for lane in Lane:
                rate = tally.recent_rate(market, lane, now)
                ceiling = _POLICIES[lane].ceiling * limit
                sent, done, dead = tally.counts(market, lane)
                table.add_row(
                    market, lane.value, f"{rate:.1f}", f"{ceiling:g}",
                    _bar(rate, ceiling, limit), str(sent), str(done), str(dead),
                )  # fmt: skip
            total = tally.recent_rate(market, None, now)
            table.add_row(
                "", "all", f"{total:.1f}", f"{limit:g}", _bar(total, limit, limit),
                "", "", f"429s: {tally.rate_limited(market)}", end_section=True,
            )  # fmt: skip
        return table

    def _line(self, now: float) -> str:
        tally = self._tally
        parts = [f"{tally.name} {now - tally.started:4.0f}s"]
        for market in MARKETS:
            rates = " ".join(
                f"{lane.value} {tally.recent_rate(market, lane, now):4.1f}" for lane in Lane
            )
            total = tally.recent_rate(market, None, now)
            done = sum(tally.counts(market, lane)[1] for lane in Lane)
            parts.append(f"{market}: {rates} = {total:4.1f}/{LIMITS[market]:g} req/s, {done} done")
        return " | ".join(parts)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _row(market: str, lane: Lane, figures: LaneFigures, fifo: LaneFigures | None) -> list[str]:
    row = [
        market, lane.value, str(figures.sent), str(figures.done), str(figures.dead),
        str(figures.lost), _seconds(figures.wait_p50), _seconds(figures.wait_p95),
        f"{figures.share:.0%}", str(figures.rate_limited),
    ]  # fmt: skip
    if fifo is not None:
        row += [str(fifo.done), _seconds(fifo.wait_p50), _seconds(fifo.wait_p95)]
    return row


def _ceilings_held(run: RunTally, out: TextIO) -> bool:
    print(
        f"\nlane ceilings (docs/DESIGN.md rule 2): share of the limit at the market in the "
        f"busiest {CHECK_SECONDS:g} s, against the ceiling (+{SHARE_TOLERANCE:.0%} for arrival "
        f"jitter):",
        file=out,
    )
    ok = True
    for market in MARKETS:
        checks = run.ceiling_checks(market)
        held = all(share <= ceiling + SHARE_TOLERANCE for _, share, ceiling in checks)
        ok &= held
        text = ", ".join(
            f"{label} {share:.0%} of {ceiling:.0%}" for label, share, ceiling in checks
        )
        print(f"  {market}: {text}: {'held' if held else 'BROKEN'}", file=out)
    return ok


def _run_held(run: RunTally, lanes_run: RunTally, out: TextIO) -> bool:
    """Nothing lost, nothing dead-lettered (the burst holds no bad job) and no 429 in either
    run; every high job done is what lanes promise."""
    totals = run.totals()
    limited = sum(run.rate_limited(market) for market in MARKETS)
    high = [run.figures(market, Lane.HIGH) for market in MARKETS]
    high_left = sum(figures.sent - figures.done for figures in high)
    print(
        f"{run.name}: {totals['done']} done, {totals['dead']} dead-lettered, "
        f"{totals['left']} left in a queue, {totals['lost']} lost, {limited} answers of 429, "
        f"{high_left} high job(s) not done",
        file=out,
    )
    for market in MARKETS:
        refusal = run.first_refusal(market)
        if refusal is not None:
            seconds, before = refusal
            print(f"  {market}: first 429 {seconds:.1f}s into the run, after {before} requests "
                  f"in the second before it (the market allows {MARKET_RATES[market]:g})",
                  file=out)  # fmt: skip
    for job_id, reason in list(run.dead.items())[:3]:
        print(f"  dead-lettered {job_id}: {reason}", file=out)
    return (
        totals["lost"] == 0
        and totals["dead"] == 0
        and limited == 0
        and (high_left == 0 or run is not lanes_run)
    )


def render_summary(runs: list[RunTally], out: TextIO) -> bool:
    """The per market and lane table, the ceiling checks and the verdict; True when it held."""
    lanes_run = runs[0]
    fifo = runs[1] if len(runs) > 1 else None
    headers = ["market", "lane", "jobs", "done", "DLQ", "lost", "wait p50", "wait p95",
               "share", "429s"]  # fmt: skip
    if fifo is not None:
        headers += ["FIFO done", "FIFO p50", "FIFO p95"]
    rows = [
        _row(market, lane, lanes_run.figures(market, lane),
             fifo.figures(market, lane) if fifo else None)
        for market in MARKETS
        for lane in Lane
    ]  # fmt: skip
    print(
        "\nwith lanes"
        + (" (FIFO: the same burst in one queue per market, same limit)" if fifo else "")
        + "; wait = enqueue to done; share = the lane's mean req/s at the market while it"
        " sent, of the limit",
        file=out,
    )
    print(render_table(headers, rows), file=out)
    ok = _ceilings_held(lanes_run, out)
    for run in runs:
        ok &= _run_held(run, lanes_run, out)
    if fifo is not None:
        for market in MARKETS:
            mine = lanes_run.figures(market, Lane.HIGH).wait_p95
            theirs = fifo.figures(market, Lane.HIGH).wait_p95
            if mine is not None and theirs is not None:
                print(
                    f"high lane p95 wait at {market}: {mine:.2f}s with lanes, "
                    f"{theirs:.2f}s in one FIFO queue (x{theirs / max(mine, 0.001):.0f})",
                    file=out,
                )
    print("\nresult: " + ("OK" if ok else "NOT OK"), file=out)
    return ok
