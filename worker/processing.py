"""One message's way from body to outcome: prepared job, attempts, idempotency, market, result.

The daemon and the Lambda handler both call `JobProcessor.process`; it never
touches the message on SQS, it only says what should happen to it
(`worker.outcomes` carries that out).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import structlog

from lanes.errors import BudgetUnavailable
from lanes.policy import LanePolicies
from markets import JobResult, Markets
from worker.envelope import PreparedJob, prepare
from worker.idempotency import Claim, IdempotencyGuard
from worker.outcomes import FREE_RELEASES, Action, Outcome, outcome_of_error, rule_of
from worker.queues import Delivery
from worker.sinks import ResultSink
from worker.tracking import ReleaseLedger

__all__ = ["JobProcessor", "result_record"]

_log = structlog.get_logger("worker.processing")


def result_record(delivery: Delivery, job: PreparedJob, result: JobResult) -> dict[str, Any]:
    """What the results sink receives for one successful job."""
    return {
        "id": job.envelope.id,
        "message_id": delivery.message.message_id,
        "market": result.market,
        "lane": delivery.queue.lane.value,
        "kind": result.kind,
        "seller": result.seller,
        "calls": result.calls,
        "data": result.data,
        "finished_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


class JobProcessor:
    """Runs one delivery's job and sorts how it ended into an `Outcome`."""

    def __init__(
        self,
        *,
        markets: Markets,
        policies: LanePolicies,
        guard: IdempotencyGuard,
        ledger: ReleaseLedger,
        sink: ResultSink,
    ) -> None:
        self._markets = markets
        self._policies = policies
        self._guard = guard
        self._ledger = ledger
        self._sink = sink

    async def note_free_release(self, delivery: Delivery) -> None:
        """`delivery` goes back without having spent an attempt (e.g. released at shutdown)."""
        await self._ledger.note(delivery)

    async def process(self, delivery: Delivery, *, deadline: float | None) -> Outcome:
        """The outcome for `delivery`; `deadline` (monotonic) bounds retries and budget waits.

        Every log line of the job carries market, lane, message_id, attempt,
        then kind and seller once the body is read.
        """
        queue = delivery.queue
        message = delivery.message
        policy = self._policies[queue.lane]
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(
            market=queue.market,
            lane=queue.lane.value,
            message_id=message.message_id,
            attempt=message.receive_count,
        ):
            try:
                outcome = await self._run(delivery, deadline)
            except asyncio.CancelledError:
                # Shutdown past its grace period or Lambda out of time: the caller releases it.
                _log.warning("job.cancelled", seconds=round(time.monotonic() - started, 3))
                raise
            except Exception as exc:  # noqa: BLE001 - every ending is sorted by the table; a bug is logged
                if rule_of(exc).label == "crashed":
                    _log.exception("job.crashed")
                outcome = outcome_of_error(
                    exc, lane=queue.lane, policy=policy, receive_count=message.receive_count
                )
            if outcome.action is Action.RELEASE and outcome.label in FREE_RELEASES:
                await self._ledger.note(delivery)
            _log.info(
                "job.finished",
                outcome=outcome.label,
                action=outcome.action.value,
                seconds=round(time.monotonic() - started, 3),
                **({"error": outcome.error} if outcome.error else {}),
            )
            # Bound once the body was read; not for the caller's next line.
            structlog.contextvars.unbind_contextvars("kind", "seller")
            return outcome

    async def _run(self, delivery: Delivery, deadline: float | None) -> Outcome:
        job = prepare(delivery.message.body, delivery.queue, self._markets)
        structlog.contextvars.bind_contextvars(kind=job.request.kind, seller=job.request.seller)
        crash_loop = await self._crash_loop(delivery)
        if crash_loop is not None:
            return crash_loop
        if job.envelope.id is not None and job.side_effect:
            return await self._run_once(delivery, job, deadline)
        result = await self._markets.run(job.request, delivery.queue.lane, deadline=deadline)
        await self._sink.send(result_record(delivery, job, result))
        return Outcome.done()

    async def _crash_loop(self, delivery: Delivery) -> Outcome | None:
        """Dead-letter a lane-with-max_attempts message whose earlier deliveries all died
        without an outcome (crash, kill, Lambda timeout), instead of running it again."""
        limit = self._policies[delivery.queue.lane].max_attempts
        received = delivery.message.receive_count
        if limit is None or received <= limit:
            return None
        free = await self._ledger.free_receives(delivery)
        if free is None or received - free <= limit:
            return None  # waits, not attempts (or Redis cannot tell: run it)
        return Outcome.dead_letter(
            "crash_loop",
            f"received {received} times ({received - free} attempts, more than max_attempts "
            f"{limit}) without finishing",
            attempts=received - free,
        )

    async def _run_once(
        self, delivery: Delivery, job: PreparedJob, deadline: float | None
    ) -> Outcome:
        """A side-effect job with an id: at most one successful market run per id."""
        assert job.envelope.id is not None
        claim = await self._guard.begin(job.request.market, job.envelope.id)
        if claim.done is not None:
            await self._sink.send({**claim.done, "duplicate_of": claim.done.get("message_id")})
            return Outcome.done("duplicate")
        result = await self._run_claimed(claim, job, delivery, deadline)
        record = result_record(delivery, job, result)
        try:
            await self._guard.finish(claim, record)
        except BudgetUnavailable as exc:
            # The market has done it: acknowledging beats a second run.
            _log.warning("idempotency.record_failed", error=str(exc))
        await self._sink.send(record)
        return Outcome.done()

    async def _run_claimed(
        self, claim: Claim, job: PreparedJob, delivery: Delivery, deadline: float | None
    ) -> JobResult:
        try:
            async with self._guard.held(claim):
                return await self._markets.run(job.request, delivery.queue.lane, deadline=deadline)
        except (asyncio.CancelledError, Exception):
            # Not done: let a redelivery claim it at once instead of waiting out the TTL.
            await self._guard.abandon(claim)
            raise
