"""`lanes enqueue` and `lanes backfill`: validate every job first, then send them all, in
bounded memory.

A source is read twice: once to validate every line (nothing is sent if one is
bad), once to send. Standard input and anything else that cannot be read twice
(a pipe, a FIFO, `<(...)`) is first spooled to a temporary file.
"""

from __future__ import annotations

import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lanes.errors import LanesError
from lanes.policy import Lane
from scripts.tools.backfill import Numbered
from scripts.tools.inputs import UsageError
from scripts.tools.sending import Progress, group_id, send_stream
from scripts.tools.validate import BadJob, JobValidator
from worker.queues import QueueName
from worker.sqs import OutgoingMessage, QueueMissing, SqsClient, SqsError

__all__ = [
    "MAX_REPORTED",
    "BadInput",
    "EnqueueTarget",
    "Source",
    "enqueue",
    "file_jobs",
    "readable_twice",
]

# Source: iterated again from its start by calling it again.
Source = Callable[[], Iterator[Numbered]]
MAX_REPORTED = 20  # bad lines named one by one; the rest are counted


class BadInput(UsageError):
    """Some input lines are bad: one line of text per bad input line (nothing was sent)."""


@dataclass(frozen=True)
class EnqueueTarget:
    prefix: str
    market: str
    lane: Lane
    group_ids: bool = True  # MessageGroupId = seller: SQS fair queues per seller

    @property
    def queue(self) -> str:
        return QueueName(self.prefix, self.market, self.lane).queue


def file_jobs(path: Path, label: str | None = None) -> Source:
    """The non-blank lines of a JSON-lines file, numbered from 1 (named `label` in errors)."""
    name = label or str(path)

    def lines() -> Iterator[Numbered]:
        try:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        yield f"{name}:{number}", line
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{name}: not UTF-8 text") from None

    return lines


@contextmanager
def readable_twice(name: str, stdin: TextIO | None = None) -> Iterator[tuple[Path, str]]:
    """(a path that can be read twice, its name for errors): a regular file as it is;
    `-` (standard input), a pipe or a FIFO copied to a temporary file removed afterwards."""
    if name != "-":
        path = Path(name)
        try:
            regular = stat.S_ISREG(path.stat().st_mode)
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from None
        if regular:
            yield path, name
            return
    with tempfile.TemporaryDirectory(prefix="lanes-enqueue-") as directory:
        spool = Path(directory) / "input"
        try:
            with spool.open("w", encoding="utf-8") as copy:
                if name == "-":
                    shutil.copyfileobj(stdin or sys.stdin, copy)
                else:
                    with open(name, encoding="utf-8") as source:
                        shutil.copyfileobj(source, copy)
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{name}: not UTF-8 text") from None
        yield spool, "<stdin>" if name == "-" else name


def _validated(source: Source, validator: JobValidator) -> int:
    """How many jobs `source` holds; `BadInput` naming every bad one (the first 20)."""
    count = 0
    bad: list[str] = []
    for where, body in source():
        count += 1
        try:
            validator.check_body(body)
        except BadJob as exc:
            bad.append(f"{where}: {exc}")
    if bad:
        shown = bad[:MAX_REPORTED]
        if len(bad) > MAX_REPORTED:
            shown.append(f"... and {len(bad) - MAX_REPORTED} more bad line(s)")
        shown[-1] += f" ({len(bad)} bad of {count}, nothing was sent)"
        raise BadInput("\n".join(shown))
    return count


def _outgoing(
    source: Source, validator: JobValidator, group_ids: bool
) -> Iterator[OutgoingMessage]:
    for _, body in source():
        envelope = validator.check_body(body).envelope
        yield OutgoingMessage(
            body=envelope.body(), group_id=group_id(envelope.seller) if group_ids else None
        )


async def enqueue(
    source: Source,
    target: EnqueueTarget,
    validator: JobValidator,
    sqs: SqsClient | None,
    *,
    out: TextIO,
) -> int:
    """Validate all of `source`, then send it (or print it when `sqs` is None: a dry run).

    Returns how many messages were sent (or would be).
    """
    total = _validated(source, validator)
    if sqs is None:
        for _, body in source():
            print(validator.check_body(body).envelope.body(), file=out)
        print(f"dry run: would send {total} message(s) to {target.queue}", file=sys.stderr)
        return total
    if total == 0:
        print(f"nothing to send to {target.queue}", file=out)
        return 0
    try:
        url = await sqs.queue_url(target.queue)
    except QueueMissing:
        raise UsageError(
            f"queue {target.queue!r} does not exist (run `lanes provision --market "
            f"{target.market}`)"
        ) from None
    with Progress(total, what=f"enqueue {target.queue}") as progress:
        try:
            sent = await send_stream(
                sqs, url, _outgoing(source, validator, target.group_ids), progress
            )
        except SqsError as exc:
            raise LanesError(
                f"{exc} (sent {progress.done} of {total} before the failure; jobs with an id "
                "are harmless to send again)"
            ) from exc
        rate = progress.rate
    print(f"sent {sent} message(s) to {target.queue} ({rate:.0f}/s)", file=out)
    return sent
