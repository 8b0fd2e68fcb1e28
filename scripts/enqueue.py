"""`lanes enqueue`: validate every job first, then send them all, in bounded memory.

A source is read twice: once to validate every line (nothing is sent if one
is bad), once to send. Standard input is spooled to a temporary file so it
can be read twice too.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lanes.policy import Lane
from scripts.backfill import Numbered
from scripts.inputs import UsageError
from scripts.sending import Progress, group_id, send_stream
from scripts.validate import BadJob, JobValidator
from worker.queues import QueueName
from worker.sqs import OutgoingMessage, QueueMissing, SqsClient

__all__ = ["EnqueueTarget", "Source", "enqueue", "file_jobs", "spooled_stdin"]

# A source can be iterated again from its start by calling it again.
Source = Callable[[], Iterator[Numbered]]


@dataclass(frozen=True)
class EnqueueTarget:
    prefix: str
    market: str
    lane: Lane
    group_ids: bool = True  # MessageGroupId = seller: SQS fair queues per seller

    @property
    def queue(self) -> str:
        return QueueName(self.prefix, self.market, self.lane).queue


def file_jobs(path: Path) -> Source:
    """The non-blank lines of a JSON-lines file, numbered from 1."""

    def lines() -> Iterator[Numbered]:
        try:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        yield f"{path}:{number}", line
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not UTF-8 text") from None

    return lines


@contextmanager
def spooled_stdin(stream: TextIO | None = None) -> Iterator[Path]:
    """Standard input copied to a temporary file (removed afterwards), to be read twice."""
    with tempfile.TemporaryDirectory(prefix="lanes-enqueue-") as directory:
        path = Path(directory) / "stdin.jsonl"
        with path.open("w", encoding="utf-8") as spool:
            shutil.copyfileobj(stream or sys.stdin, spool)
        yield path


def _validated(source: Source, validator: JobValidator) -> int:
    count = 0
    for where, body in source():
        try:
            validator.check_body(body)
        except BadJob as exc:
            raise UsageError(f"{where}: {exc} (nothing was sent)") from None
        count += 1
    return count


def _outgoing(
    source: Source, validator: JobValidator, group_ids: bool
) -> Iterator[OutgoingMessage]:
    for _, body in source():
        envelope = validator.check_body(body)
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
            print(validator.check_body(body).body(), file=out)
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
        sent = await send_stream(sqs, url, _outgoing(source, validator, target.group_ids), progress)
        rate = progress.rate
    print(f"sent {sent} message(s) to {target.queue} ({rate:.0f}/s)", file=out)
    return sent
