"""Side effects on many items at once (shipping): each item done exactly once.

A batch is posted; the market's answer sorts each item into done, worth retrying
(the market says so) or refused. Retryable items are posted again, alone, with
the lane's retries (high: until success). A refused item that already carries
our change (an earlier attempt whose answer was lost) counts as done. After a
lost answer, and from the first round of a resumed job (`JobContext.resumed`: an
earlier worker may have posted), the items are checked before anything is
posted, and only those without our change are posted. Items refused
for good end the job as a `PartialFailure` listing each with its reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

from markets.client import Call
from markets.errors import PartialFailure, TransientError
from markets.jobs import NOT_LANDED, JobContext

__all__ = ["Batch", "Verdict", "run_batch"]

Item = TypeVar("Item")


class Verdict(Enum):
    DONE = "done"
    RETRY = "retry"
    REFUSED = "refused"


@dataclass
class Batch(Generic[Item]):
    """What a batch effect is: the items by id, how to post some, how to read the answer,
    and how to check which items already carry our change."""

    endpoint: str
    items: Mapping[str, Item]
    request: Callable[[list[Item]], Call]
    # the market's answer -> (item id, verdict, the market's reason) per item
    sort: Callable[[Any], Iterable[tuple[str, Verdict, str]]]
    # items -> the ids among them that already carry our change
    check: Callable[[list[Item]], Awaitable[set[str]]]
    done: list[str] = field(default_factory=list)


async def run_batch(context: JobContext, batch: Batch[Item]) -> list[str]:
    """Post the batch until every item is done or refused; returns the done ids."""
    pending: dict[str, Item] = dict(batch.items)
    refused: dict[str, str] = {}

    def settle(ids: Iterable[str]) -> None:
        for item_id in ids:
            if pending.pop(item_id, None) is not None:
                batch.done.append(item_id)

    async def landed() -> Any:
        settle(await batch.check(list(pending.values())))
        return NOT_LANDED if pending else None

    async def one_round() -> None:
        answer = await context.effect(lambda: batch.request(list(pending.values())), landed=landed)
        verdicts = list(batch.sort(answer)) if answer is not None else []
        settle(item for item, verdict, _ in verdicts if verdict is Verdict.DONE)
        no = {item: reason for item, verdict, reason in verdicts if verdict is Verdict.REFUSED}
        if no:
            # Refused, but perhaps because an earlier attempt already did it.
            ours = await batch.check([pending[item] for item in no if item in pending])
            settle(ours)
            for item, reason in no.items():
                if item not in ours and pending.pop(item, None) is not None:
                    refused[item] = reason
        if pending:
            raise TransientError(
                f"{len(pending)} item(s) to retry: {', '.join(pending)}",
                market=context.client.name,
                endpoint=batch.endpoint,
            )

    await context.attempts(one_round, batch.endpoint)
    if refused:
        raise PartialFailure(
            market=context.client.name, endpoint=batch.endpoint, done=batch.done, failed=refused
        )
    return batch.done
