"""One fault run: send the jobs, start the workers, inject the fault at a quarter done, heal
it, wait for the drain, count."""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from typing import Any

from bench.faults.definitions import Fault
from bench.faults.report import RunReport
from bench.faults.rig import PASSWORD, TOKEN, VISIBILITY, Rig, Run, drain_queue, http_json

__all__ = ["explain_over", "run_fault"]


def _jobs(prefix: str, high: int, medium: int, low: int) -> dict[str, list[tuple[str, str]]]:
    """(id, body) per lane; a side effect is a POST whose JSON `key` is the job's id.
    Ids carry the run's prefix: the market's counts are per id across runs."""

    def body(job_id: str, endpoint: str, extra: dict[str, Any]) -> str:
        payload = {"endpoint": endpoint, **extra}
        return json.dumps(
            {"kind": "call", "market": "acme", "seller": "s-1", "payload": payload, "id": job_id}
        )

    def lane(letter: str, count: int, side_effects: int) -> list[tuple[str, str]]:
        """`count` jobs, every `side_effects`-th one a POST (0: none)."""
        made = []
        for n in range(count):
            job_id = f"{prefix}-{letter}{n}"
            if side_effects and n % side_effects == 0:
                made.append((job_id, body(job_id, "ship", {"json": {"key": job_id}})))
            else:
                made.append((job_id, body(job_id, "orders", {})))
        return made

    # High ships; medium collects; low is half product syncs (POST), half backfill reads.
    return {"high": lane("h", high, 1), "medium": lane("m", medium, 0), "low": lane("l", low, 2)}


def _leaks(run: Run, dead: list[dict[str, Any]]) -> int:
    # Every log of the run: the workers', and those of Lambda worker processes.
    logs = run.rig.workdir.glob(f"{run.prefix}-worker-*.log")
    texts = [log.read_text(errors="replace") for log in logs]
    texts += [json.dumps(message.get("MessageAttributes", {})) for message in dead]
    return sum(text.count(PASSWORD) + text.count(TOKEN) for text in texts)


def explain_over(market_url: str, since: float) -> None:
    """Print each refusal with the arrivals the market counted in its trailing second and the
    market loop's stalls around it: a stall delays the stamps of what arrived during it."""
    answers = [(at, status) for at, status in http_json(f"{market_url}/log") if at >= since]
    stalls = http_json(f"{market_url}/report")["stalls"]
    for at, status in answers:
        if status != 429:
            continue
        window = [round(at - t, 3) for t, s in answers if s == 200 and at - 1.0 < t <= at]
        near = [(round(t - at, 3), lag) for t, lag in stalls if -2.0 <= t - at <= 0.5]
        print(
            f"over at {at:.3f}: {len(window)} accepted in the trailing second (ages {window}); "
            f"market loop stalls near it (s from it, lag s): {near}",
            file=sys.stderr,
            flush=True,
        )


def run_fault(
    rig: Rig,
    fault: Fault,
    *,
    workers: int = 2,
    seconds: float | None = None,
    jobs: tuple[int, int, int] = (30, 60, 60),
    drain_timeout: float = 150.0,
) -> RunReport:
    """One run: send the jobs, start `workers`, inject `fault` at a quarter done, heal it after
    `seconds` (default: the fault's own), wait for the drain, count."""
    prefix = f"f{uuid.uuid4().hex[:8]}"
    run = Run(
        rig,
        prefix,
        workers,
        redis_gate=fault.redis_gate,
        lambda_timeout=fault.lambda_timeout,
        env=dict(fault.env),
    )
    http_json(f"{rig.market_url}/fault", {})
    sqs = rig.sqs()
    urls, dead_urls = rig.provision(prefix)
    bodies = _jobs(prefix, *jobs)
    run.queues, run.bodies = urls, bodies
    ids = {job_id for lane in bodies.values() for job_id, _ in lane}
    for lane, lane_jobs in bodies.items():
        for start in range(0, len(lane_jobs), 10):
            entries = [
                {"Id": job_id, "MessageBody": body}
                for job_id, body in lane_jobs[start : start + 10]
            ]
            sqs.send_message_batch(QueueUrl=urls[lane], Entries=entries)
    before = http_json(f"{rig.market_url}/stats")
    dead: dict[str, dict[str, Any]] = {}

    def done_ids() -> dict[str, list[float]]:
        results: dict[str, list[float]] = http_json(f"{rig.market_url}/report")["results"]
        return {job_id: times for job_id, times in results.items() if job_id in ids}

    def collect_dead() -> None:
        for url in dead_urls:
            for message in drain_queue(sqs, url):
                dead.setdefault(json.loads(message["Body"]).get("id", "?"), message)

    drained = None
    started_wall = time.time()
    if fault.before is not None:
        fault.before(run)
    try:
        for _ in range(workers):
            run.spawn()
        started = time.monotonic()
        while len(done_ids()) < len(ids) // 4 and time.monotonic() - started < 60:
            time.sleep(0.2)
        fault.inject(run)
        time.sleep(fault.seconds if seconds is None else seconds)
        fault.heal(run)
        healed_at, healed_wall = time.monotonic(), time.time()
        while time.monotonic() - healed_at < drain_timeout:
            collect_dead()
            if len(set(done_ids()) | set(dead)) >= len(ids):
                drained = time.monotonic() - healed_at
                break
            time.sleep(1.0)
    finally:
        run.stop_all(signal.SIGTERM)
    collect_dead()
    done = done_ids()
    after = http_json(f"{rig.market_url}/stats")
    queued: set[str] = set()
    if set(done) | set(dead) < ids:
        # Whatever is still queued is not lost: visible now, or once its visibility times out.
        time.sleep(VISIBILITY + 1)
        queued = {
            json.loads(message["Body"]).get("id")
            for url in urls.values()
            for message in drain_queue(sqs, url)
        }
    if after["refused"] > before["refused"]:
        explain_over(rig.market_url, started_wall)
    firsts = [min(times) for times in done.values() if max(times) >= healed_wall]
    after_heal = [moment - healed_wall for moment in firsts if moment >= healed_wall]
    dead_messages = list(dead.values())
    return RunReport(
        fault=fault.name,
        workers=workers,
        jobs=len(ids),
        done=len(set(done) & ids),
        dead=len(set(dead) & ids),
        over=after["refused"] - before["refused"],
        lost=len(ids - set(done) - set(dead) - queued),
        twice=len(set(http_json(f"{rig.market_url}/report")["twice"]) & ids),
        no_reason=sum(
            1
            for message in dead_messages
            if "lanes.reason" not in message.get("MessageAttributes", {})
        ),
        leaks=_leaks(run, dead_messages),
        recovery=min(after_heal) if after_heal else None,
        drained=drained,
        dead_letters=[
            {name: value.get("StringValue", "") for name, value in attributes.items()}
            for attributes in (message.get("MessageAttributes", {}) for message in dead_messages)
        ],
    )
