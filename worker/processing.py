"""One message's way from body to outcome: prepared job, attempts, idempotency, market, result.

The daemon and the Lambda handler both call `JobProcessor.process`; it never
touches the message on SQS, it only says what should happen to it
(`worker.outcomes` sorts errors and carries the outcome out).

Waiting costs no attempt (docs/DESIGN.md rule 12): a wait (Redis, a claim, the
results sink, a cooldown) that ends before the delivery's deadline is waited out
here while the heartbeat keeps the message invisible, so it spends no SQS
receive; past the deadline the message is released for the wait, its attempt
refunded. A lane with `max_attempts` (low) makes one attempt per delivery and
spreads its attempts over minutes of backoff across deliveries, counted by
lanes (`worker.tracking.Attempts`), not by SQS receives. A finished job whose
result the sink could not take keeps its result, so only the sink write is
retried, never the market job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from lanes.errors import BudgetUnavailable
from lanes.policy import LanePolicies
from markets import JobResult, Markets
from markets.errors import OutcomeUnknown, PartialFailure, RetryLater, TransientError
from worker.envelope import PreparedJob, prepare
from worker.idempotency import CheckFirst, Claim, ClaimLost, IdempotencyGuard
from worker.metrics import Metrics
from worker.outcomes import (
    ATTEMPT_BACKOFF,
    FREE_RELEASES,
    Outcome,
    Sort,
    exhausted,
    outcome_of_error,
    rule_of,
)
from worker.queues import Delivery
from worker.sinks import ResultSink, SinkError
from worker.tracking import Attempts, JobTracker

__all__ = ["RUNNING_AFTER", "JobProcessor", "result_record"]

_log = structlog.get_logger("worker.processing")
# Longest single in-process wait before looking again (Redis, a claim, the sink).
_HOLD_CAP = 30.0
# A job still running after this long is recorded "running"; one done sooner goes from
# "queued" straight to its ending, so a quick job costs one status write, not two.
RUNNING_AFTER = 1.0


def result_record(delivery: Delivery, job: PreparedJob, result: JobResult) -> dict[str, Any]:
    """What the results sink receives for one successful job (a collection's `watermark`
    moves once the record is delivered)."""
    mark = {"watermark": result.watermark.record()} if result.watermark is not None else {}
    return {
        **mark,
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


def _after_posting(claim: Claim, exc: Exception) -> Exception:
    """What a run that may have posted ends with; its record stays "posting" (`give_up`).

    A market failure or a deadline is tried again, resumed (checking what landed first);
    a request without answer, or a claim lost (Redis restarted empty: `give_up` put the
    record back "posting"), stops the run and is tried again the same way. Items refused
    for good are reported as they are. Anything else (a 4xx, Redis down) leaves the outcome
    unknown: a person looks (docs/DESIGN.md rule 11).
    """
    if isinstance(exc, OutcomeUnknown | PartialFailure | TransientError | RetryLater):
        return exc
    if isinstance(exc, CheckFirst | ClaimLost):
        return TransientError(f"{exc}; checked before anything is sent again", market=claim.market)
    return OutcomeUnknown(f"a request may have landed before: {exc}", market=claim.market)


class JobProcessor:
    """Runs one delivery's job and sorts how it ended into an `Outcome`."""

    def __init__(
        self,
        *,
        markets: Markets,
        policies: LanePolicies,
        guard: IdempotencyGuard,
        attempts: Attempts,
        tracker: JobTracker,
        sink: ResultSink,
        metrics: Metrics,
        retry_backoff: float = ATTEMPT_BACKOFF,
    ) -> None:
        self._retry_backoff = retry_backoff
        self.metrics = metrics
        self._markets = markets
        self._policies = policies
        self._guard = guard
        self._attempts = attempts
        self._tracker = tracker
        self._sink = sink

    async def process(self, delivery: Delivery, *, deadline: float | None) -> Outcome:
        """The outcome for `delivery`; `deadline` (monotonic) bounds retries and waits.

        Every log line of the job carries market, lane, message_id, receive,
        then kind and seller once the body is read.
        """
        queue = delivery.queue
        message = delivery.message
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(
            market=queue.market,
            lane=queue.lane.value,
            message_id=message.message_id,
            receive=message.receive_count,
        ):
            try:
                job = prepare(message.body, queue, self._markets.config)
            except Exception as exc:  # noqa: BLE001 - sorted by the table (poison, permanent)
                outcome = self._sorted(delivery, exc, attempts=0)
            else:
                structlog.contextvars.bind_contextvars(
                    kind=job.request.kind, seller=job.request.seller
                )
                try:
                    with self.metrics.job(queue, message):
                        outcome = await self._holding(delivery, job, deadline)
                except asyncio.CancelledError:
                    # Shutdown past its grace period or Lambda out of time: the caller releases.
                    _log.warning("job.cancelled", seconds=round(time.monotonic() - started, 3))
                    raise
                outcome = replace(
                    outcome,
                    job_id=job.envelope.id or message.message_id,
                    kind=job.request.kind,
                    seller=job.request.seller,
                )
            _log.info(
                "job.finished",
                outcome=outcome.label,
                action=outcome.action.value,
                seconds=round(time.monotonic() - started, 3),
                **({"error": outcome.error} if outcome.error else {}),
            )
            structlog.contextvars.unbind_contextvars("kind", "seller")
            return outcome

    def _sorted(self, delivery: Delivery, exc: BaseException, *, attempts: int) -> Outcome:
        if rule_of(exc).label == "crashed":
            _log.error("job.crashed", exc_info=exc)
        lane = delivery.queue.lane
        return outcome_of_error(
            exc,
            lane=lane,
            policy=self._policies[lane],
            attempts=attempts,
            retry_backoff=self._retry_backoff,
        )

    async def _holding(
        self, delivery: Delivery, job: PreparedJob, deadline: float | None
    ) -> Outcome:
        """Attempt the job; wait out in process every wait that ends before `deadline`."""
        kept: list[dict[str, Any]] = []  # a result the sink has not taken yet
        holds = 0
        while True:
            outcome = await self._attempt(delivery, job, deadline, kept)
            if deadline is None or outcome.label not in FREE_RELEASES:
                return outcome
            wait = max(1.0, float(outcome.visibility))
            if time.monotonic() + wait >= deadline:
                return outcome  # a wait longer than the time left: released for the wait
            # A wait that keeps coming back (Redis down) is asked about less and less often.
            pause = min(_HOLD_CAP, max(wait, 2.0**holds))
            holds += 1
            _log.info("job.waiting", outcome=outcome.label, pause=pause, error=outcome.error)
            self.metrics.waited(delivery.queue, outcome.label)
            await asyncio.sleep(pause)

    async def _attempt(
        self,
        delivery: Delivery,
        job: PreparedJob,
        deadline: float | None,
        kept: list[dict[str, Any]],
    ) -> Outcome:
        lane = delivery.queue.lane
        limit = self._policies[lane].max_attempts
        attempts = delivery.message.receive_count
        counted = False
        try:
            # A redelivery may find a result kept by a run before it; one that never ran
            # (set aside by the seller buffer) cannot, and is spared the read.
            if kept or (delivery.message.receive_count > 1 and not delivery.never_ran):
                resent = await self._resend_kept(delivery, kept)
                if resent is not None:
                    return resent
            if limit is not None:
                attempts = await self._attempts.spend(delivery)
                counted = True
                if attempts > limit:  # the attempts were spent by runs that never finished
                    return exhausted(lane, attempts - 1)
            async with self._running_later(delivery, job, attempts):
                return await self._run(delivery, job, deadline, kept, one_attempt=limit is not None)
        except Exception as exc:  # noqa: BLE001 - every ending is sorted by the table
            outcome = self._sorted(delivery, exc, attempts=attempts)
            if counted and outcome.label in FREE_RELEASES:
                await self._attempts.refund(delivery)
            return outcome
        except asyncio.CancelledError:
            if counted:
                await self._attempts.refund(delivery)  # shutdown: not this message's failure
            raise

    async def _run(
        self,
        delivery: Delivery,
        job: PreparedJob,
        deadline: float | None,
        kept: list[dict[str, Any]],
        *,
        one_attempt: bool,
    ) -> Outcome:
        if job.envelope.id is not None and job.side_effect:
            claim = await self._guard.begin(
                job.request.market, job.request.seller, job.request.kind, job.envelope.id
            )
            if claim.done is not None:
                await self._sink.send({**claim.done, "duplicate_of": claim.done.get("message_id")})
                return replace(Outcome.done("duplicate"), result=claim.done)
            try:
                async with self._guard.held(claim):
                    result = await self._market(
                        delivery, job, deadline, one_attempt, resumed=claim.resumed
                    )
            except (Exception, asyncio.CancelledError) as exc:
                if not claim.uncertain:
                    await self._guard.abandon(claim)  # surely not done: free it at once
                    raise
                if isinstance(exc, asyncio.CancelledError):
                    raise
                await self._guard.give_up(claim)
                error = _after_posting(claim, exc)
                if error is exc:
                    raise
                raise error from exc
            record = result_record(delivery, job, result)
            try:
                await self._guard.finish(claim, record)
            except BudgetUnavailable as exc:
                # The market has done it: acknowledging beats a second run.
                _log.warning("idempotency.record_failed", error=str(exc))
        else:
            result = await self._market(delivery, job, deadline, one_attempt)
            record = result_record(delivery, job, result)
        return await self._deliver(delivery, record, kept)

    async def _market(
        self,
        delivery: Delivery,
        job: PreparedJob,
        deadline: float | None,
        one_attempt: bool,
        *,
        resumed: bool = False,
    ) -> JobResult:
        lane = delivery.queue.lane
        if one_attempt:
            return await self._markets.run(
                job.checked, lane, deadline=deadline, max_attempts=1, resumed=resumed
            )
        return await self._markets.run(job.checked, lane, deadline=deadline, resumed=resumed)

    async def _deliver(
        self, delivery: Delivery, record: dict[str, Any], kept: list[dict[str, Any]]
    ) -> Outcome:
        """Hand the result to the sink; if it cannot take it now, keep it (in process and in
        Redis) so that only the sink write is tried again."""
        try:
            await self._sink.send(record)
            await self._markets.delivered(record)
        except SinkError as exc:
            if rule_of(exc).sort is Sort.WAIT:
                kept[:] = [record]
                try:
                    await self._attempts.keep_result(delivery, record)
                except BudgetUnavailable as lost:
                    _log.warning("result.keep_failed", error=str(lost))
            raise
        return replace(Outcome.done(), result=record)

    async def _resend_kept(self, delivery: Delivery, kept: list[dict[str, Any]]) -> Outcome | None:
        record = kept[0] if kept else await self._attempts.kept_result(delivery)
        if record is None:
            return None
        outcome = await self._deliver(delivery, record, kept)
        await self._attempts.forget_result(delivery)
        return replace(outcome, label="result_resent")

    @asynccontextmanager
    async def _running_later(
        self, delivery: Delivery, job: PreparedJob, attempts: int
    ) -> AsyncIterator[None]:
        """Record the job "running" once it has run `RUNNING_AFTER` s. A write under way
        when the body ends is awaited, so it never lands after the job's ending."""
        writing = False

        async def later() -> None:
            nonlocal writing
            await asyncio.sleep(RUNNING_AFTER)
            writing = True
            await self._track(delivery, job, "running", attempts=attempts)

        writer = asyncio.create_task(later())
        try:
            yield
        finally:
            if not writing:
                writer.cancel()  # still asleep: nothing was sent
            await asyncio.gather(writer, return_exceptions=True)

    async def _track(self, delivery: Delivery, job: PreparedJob, state: str, **fields: Any) -> None:
        await self._tracker.update(
            job.envelope.id or delivery.message.message_id,
            state,
            market=job.request.market,
            lane=delivery.queue.lane.value,
            kind=job.request.kind,
            seller=job.request.seller,
            message_id=delivery.message.message_id,
            **fields,
        )
