"""What one run counts, and the table of runs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["HEADER", "RunReport", "table"]


@dataclass
class RunReport:
    fault: str
    workers: int
    jobs: int
    done: int
    dead: int
    over: int
    lost: int
    twice: int
    no_reason: int
    leaks: int
    recovery: float | None
    drained: float | None
    # The string attributes of each dead letter (lanes.reason, lanes.error, ...).
    dead_letters: list[dict[str, str]] = field(default_factory=list)

    @property
    def reasons(self) -> Counter[str]:
        return Counter(attributes.get("lanes.reason", "-")[:60] for attributes in self.dead_letters)

    def row(self) -> list[str]:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        return [
            self.fault, str(self.workers), str(self.jobs), str(self.done), str(self.dead),
            str(self.over), str(self.lost), str(self.twice), str(self.no_reason),
            str(self.leaks), seconds(self.recovery), seconds(self.drained),
        ]  # fmt: skip

    @property
    def kept_promises(self) -> bool:
        return self.over == self.lost == self.twice == self.no_reason == self.leaks == 0


HEADER = [
    "fault", "workers", "jobs", "done", "dead", "over", "lost", "twice", "no-reason",
    "leaks", "recovery s", "drained s",
]  # fmt: skip


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in [HEADER, *rows]]  # fmt: skip
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)
