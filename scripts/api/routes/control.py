"""The board's operator actions under `/board/api/` (not in the OpenAPI document): dead
letters listed, replayed or discarded, and lanes paused or resumed. They go through the
code of the CLI: `scripts.tools.replay.replay` (dry run first, then the confirmed move of
exactly the messages listed) and `worker.pauses`; the operator's name comes from the
board's session (`scripts.api.board.Sessions`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from lanes.policy import Lane
from scripts.api.runtime import ApiRuntime, check_market, runtime_of
from scripts.tools.replay import DeadLetter, ReplayFilter, ReplayReport, replay
from worker.pauses import LanePauses
from worker.queues import ATTR_ERROR, ATTR_FAILED_AT, ATTR_FIRST_ATTEMPT_AT, QueueName
from worker.sqs import SqsClient

if TYPE_CHECKING:  # the board mounts this router
    from scripts.api.board import Sessions

__all__ = ["LIST_MAX", "discard", "router"]

log = structlog.get_logger("api.board")

LIST_MAX = 500  # dead letters listed per lane at most


# --- dead letters -----------------------------------------------------------------------


@dataclass(frozen=True)
class Picked(ReplayFilter):
    """The dead letters an operator picked on the page, by message id."""

    ids: frozenset[str] = frozenset()

    def matches(self, dead: DeadLetter) -> bool:
        return dead.message.message_id in self.ids and super().matches(dead)


def _dead(dead: DeadLetter) -> dict[str, Any]:
    attributes = dead.message.message_attributes
    return {
        "message_id": dead.message.message_id,
        "kind": dead.kind,
        "seller": dead.seller,
        "reason": dead.reason,
        "attempts": dead.attempts,
        "age": round(dead.age.total_seconds(), 1),
        # Set by lanes when it dead-letters; a message SQS redrove carries neither.
        "first_attempt_at": attributes.get(ATTR_FIRST_ATTEMPT_AT),
        "last_attempt_at": attributes.get(ATTR_FAILED_AT),
        "error": attributes.get(ATTR_ERROR),
    }


def _groups(listed: list[DeadLetter]) -> list[dict[str, Any]]:
    """Dead letters by reason, the largest group first."""
    by_reason: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for dead in listed:
        by_reason[dead.reason].append(_dead(dead))
    return [
        {"reason": reason, "count": len(jobs), "jobs": jobs}
        for reason, jobs in sorted(by_reason.items(), key=lambda item: -len(item[1]))
    ]


def _report(report: ReplayReport) -> dict[str, Any]:
    return {
        "examined": report.examined,
        "moved": report.moved,
        "would_move": len(report.listed),
        "groups": _groups(report.listed),
        "came_back": dict(report.came_back),
        "arrived": report.arrived,
        "left_in_dead_letter": report.left_in_dead_letter,
    }


async def discard(sqs: SqsClient, url: str, ids: frozenset[str]) -> int:
    """Delete the dead letters `ids` from the queue at `url`; the number deleted. Others
    received meanwhile are held invisible until the end, so each is looked at once."""
    left = set(ids)
    held: list[str] = []
    deleted = empty = 0
    try:
        while left and empty < 2:  # two empty polls: the rest is gone already
            batch = await sqs.receive(url, max_messages=10, wait_seconds=1, visibility_timeout=60)
            empty = 0 if batch else empty + 1
            chosen = [message for message in batch if message.message_id in left]
            held.extend(m.receipt_handle for m in batch if m.message_id not in left)
            if chosen:
                failed = await sqs.delete_batch(url, [m.receipt_handle for m in chosen])
                deleted += len(chosen) - len(failed)
                left.difference_update(m.message_id for m in chosen)
    finally:
        if held:
            await sqs.change_visibility_batch(url, [(receipt, 0) for receipt in held])
    return deleted


class Pick(BaseModel):
    """Dead letters of one lane's dead-letter queue, by message id."""

    market: str
    lane: Lane
    ids: list[str] = Field(min_length=1, max_length=LIST_MAX)


class Replay(Pick):
    dry_run: bool = True


def _lane_of(request: Request, market: str, lane: Lane) -> tuple[ApiRuntime, QueueName]:
    """The runtime and the lane's queue names (`NotFound` for a market not configured)."""
    runtime = runtime_of(request)
    check_market(runtime, market)
    return runtime, QueueName(runtime.settings.queue_prefix, market, lane)


async def _replay(
    runtime: ApiRuntime, names: QueueName, only: ReplayFilter, max_messages: int, *, dry_run: bool
) -> ReplayReport:
    """`names`' dead letters that `only` picks, moved back to its lane queue (a dry run
    lists them); the listing and the confirmed move run the same replay."""
    return await replay(
        runtime.sqs,
        dead_letter_url=await runtime.sqs.queue_url(names.dead_letter),
        lane_url=await runtime.sqs.queue_url(names.queue),
        only=only,
        max_messages=max_messages,
        dry_run=dry_run,
        visibility=60,
    )


def router(sessions: Sessions, prefix: str) -> APIRouter:
    """The actions under the board's `prefix`."""
    routes = APIRouter(prefix=prefix, include_in_schema=False)

    @routes.get("/api/dead-letters")
    async def dead_letters(
        request: Request, market: Annotated[str, Query()], lane: Annotated[Lane, Query()]
    ) -> JSONResponse:
        runtime, names = _lane_of(request, market, lane)
        report = await _replay(runtime, names, ReplayFilter(), LIST_MAX, dry_run=True)
        return JSONResponse(_report(report))

    @routes.post("/api/replay")
    async def replay_picked(request: Request, pick: Annotated[Replay, Body()]) -> JSONResponse:
        """A dry run lists what would move; the confirmed run moves exactly those ids."""
        runtime, names = _lane_of(request, pick.market, pick.lane)
        picked = Picked(ids=frozenset(pick.ids))
        report = await _replay(runtime, names, picked, len(pick.ids), dry_run=pick.dry_run)
        if report.moved:
            await runtime.tracker.count(pick.market, pick.lane.value, "replayed", report.moved)
        log.info("board.replay", who=sessions.operator(request), queue=names.dead_letter,
                 dry_run=pick.dry_run, moved=report.moved, listed=len(report.listed))  # fmt: skip
        return JSONResponse(_report(report))

    @routes.post("/api/discard")
    async def discard_picked(request: Request, pick: Annotated[Pick, Body()]) -> JSONResponse:
        runtime, names = _lane_of(request, pick.market, pick.lane)
        url = await runtime.sqs.queue_url(names.dead_letter)
        deleted = await discard(runtime.sqs, url, frozenset(pick.ids))
        if deleted:
            await runtime.tracker.count(pick.market, pick.lane.value, "discarded", deleted)
        log.info(
            "board.discard",
            who=sessions.operator(request),
            queue=names.dead_letter,
            deleted=deleted,
        )
        return JSONResponse({"deleted": deleted})

    @routes.post("/api/lanes/{market}/{lane}/{action}")
    async def control(
        request: Request,
        market: Annotated[str, Path()],
        lane: Annotated[Lane, Path()],
        action: Annotated[str, Path(pattern="^(pause|resume)$")],
    ) -> Response:
        runtime, _ = _lane_of(request, market, lane)
        pauses = LanePauses(runtime.store.client)
        if action == "pause":
            await pauses.pause(market, lane, by=sessions.operator(request))
        else:
            await pauses.resume(market, lane, by=sessions.operator(request))
        return JSONResponse({"paused": await pauses.all()})

    return routes
