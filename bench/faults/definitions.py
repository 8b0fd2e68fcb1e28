"""The faults: how each is injected into a run and healed."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from bench.faults.gate import Gate
from bench.faults.rig import Run, http_json

__all__ = ["FAULTS", "LONG_RUNNING", "Fault", "market_fault"]

# A Redis up this long has no restart to tell a flush by: longer than any span of the
# rig's budgets (the per-seller endpoint's low lane spans 10 s).
LONG_RUNNING = 12.0


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Run], None]
    heal: Callable[[Run], None]
    seconds: float  # how long the fault lasts in the bench (tests shorten it)
    redis_gate: bool = False  # workers reach Redis through the gate
    lambda_timeout: float | None = None  # run Lambda handlers with this timeout, not daemons
    before: Callable[[Run], None] | None = None  # readies the rig before the workers start
    env: tuple[tuple[str, str], ...] = ()  # the workers' settings over the rig's


def _nothing(run: Run) -> None:
    return None


def _sigkill(run: Run) -> None:
    run.fault(sleep=1.5)  # jobs are mid-call (mid-POST for high) when the kill comes
    time.sleep(1.0)
    run.live()[0].kill()
    run.spawn()  # the supervisor (ECS, systemd) starts a replacement


def _sigterm_burst(run: Run) -> None:
    run.stop_all(signal.SIGTERM)
    for _ in range(run.workers):
        run.spawn()


def _clocks_differ(run: Run) -> None:
    """Workers replaced by ones whose clocks are 30 s ahead and behind: time comes from
    Redis (docs/DESIGN.md rule 1), so the limit holds regardless."""
    run.stop_all(signal.SIGTERM)
    for number in range(run.workers):
        run.spawn(clock_skew=30.0 if number % 2 else -30.0)


def _redis_stop(run: Run) -> None:
    run.rig.redis.stop()


def _redis_start(run: Run) -> None:
    run.rig.redis.start()  # empty: no persistence


def _redis_restart_empty(run: Run) -> None:
    _redis_stop(run)
    _redis_start(run)


def _restart_with_duplicates(run: Run) -> None:
    """Issue 25 (2): Redis restarts empty while POSTs are in flight (the market answers in
    1.5 s), and every high job (a side effect) not done yet is delivered a second time at
    once. (A duplicate of a job done before the restart is not: its record went with
    Redis's data, and a generic POST cannot be asked whether it landed: docs/DESIGN.md,
    "What remains open".)"""
    run.fault(sleep=1.5)
    time.sleep(1.0)
    _redis_restart_empty(run)
    done = set(http_json(f"{run.rig.market_url}/report")["results"])
    sqs = run.rig.sqs()
    high = [(job_id, body) for job_id, body in run.bodies["high"] if job_id not in done]
    for start in range(0, len(high), 10):
        entries = [{"Id": str(n), "MessageBody": body}
                   for n, (_id, body) in enumerate(high[start : start + 10])]  # fmt: skip
        sqs.send_message_batch(QueueUrl=run.queues["high"], Entries=entries)


def _long_running(run: Run) -> None:
    """A fresh rig's Redis is let age past every window before the workers start, so that
    the flush below finds no restart to tell it by."""
    with redis.Redis(port=run.rig.redis.port) as client:
        uptime = int(client.info("server")["uptime_in_seconds"])
    if uptime < LONG_RUNNING:
        time.sleep(LONG_RUNNING - uptime)


def _flushall(run: Run) -> None:
    """FLUSHALL on a Redis that has been up longer than any window: no restart to tell the
    loss by (docs/DESIGN.md rule 10). Injected, then again at the heal: twice per run."""
    with redis.Redis(port=run.rig.redis.port) as client:
        client.flushall()


def _slow(gate: str, seconds: float) -> Callable[[Run], None]:
    def act(run: Run) -> None:
        target: Gate | None = getattr(run.rig, gate)
        assert target is not None
        target.delay = seconds

    return act


def _cut_sqs(run: Run) -> None:
    assert run.rig.sqs_gate is not None
    run.rig.sqs_gate.cut()


def _mend_sqs(run: Run) -> None:
    assert run.rig.sqs_gate is not None
    run.rig.sqs_gate.mend()


def market_fault(**fault: Any) -> Callable[[Run], None]:
    """Set the market's fault (`status`, `sleep`, `sink_status`); no argument heals it."""

    def act(run: Run) -> None:
        run.fault(**fault)

    return act


FAULTS = {
    fault.name: fault
    for fault in (
        Fault("none", _nothing, _nothing, 0),
        Fault("sigkill", _sigkill, market_fault(), 0),
        Fault("sigterm-burst", _sigterm_burst, _nothing, 0),
        Fault("clocks-differ", _clocks_differ, _nothing, 0),
        Fault("redis-down", _redis_stop, _redis_start, 45),
        Fault("redis-restart-empty", _redis_restart_empty, _nothing, 0),
        Fault("redis-restart-duplicates", _restart_with_duplicates, market_fault(), 0),
        # Issue 25 (3): 1,000 slots per worker at the least visibility (10 s): the heartbeat
        # keeps every held message invisible while the market answers slowly.
        Fault(
            "many-slots",
            market_fault(sleep=1.5),
            market_fault(),
            15,
            env=(("LANES_CONCURRENCY", "1000"),),
        ),
        Fault("redis-flushall", _flushall, _flushall, 15, before=_long_running),
        Fault("redis-slow", _slow("redis_gate", 0.5), _slow("redis_gate", 0.0), 15, True),
        Fault("429-storm", market_fault(status=429), market_fault(), 15),
        Fault("5xx-storm", market_fault(status=503), market_fault(), 15),
        Fault("slow-answers", market_fault(sleep=1.5), market_fault(), 15),
        Fault("timeouts", market_fault(sleep=3.0), market_fault(), 15),
        Fault("sqs-unreachable", _cut_sqs, _mend_sqs, 15),
        Fault("sink-down", market_fault(sink_status=503), market_fault(), 15),
        # Slow answers against a 3 s function timeout: invocations run out of time.
        Fault(
            "lambda-out-of-time", market_fault(sleep=1.5), market_fault(), 15, lambda_timeout=3.0
        ),
    )
}
