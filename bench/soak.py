"""The soak (issue 25): many side effects over many slots, Redis restarted empty mid-run.

`python -m bench.soak` (`make soak`) sends `--jobs` POSTs (10,000), each a side effect
whose JSON `key` is its job id, to the high lane of market `acme`, runs `--workers` (4)
`lanes worker` processes with `--slots` (1,000) slots each and `--visibility`
(LANES_VISIBILITY_TIMEOUT, the settings' default 120 s; the fault suite's many-slots row
holds 1,000 slots at the lowest, 10 s) against the fault suite's rig (real redis-server, moto's SQS
server, the counting market of `bench.faults`), restarts Redis empty `--restarts` (2)
times spread over the run, waits for every job to be done or dead-lettered, and prints:
side effects performed once, twice and never (at the market), dead letters (with and
without a reason), jobs lost, arrivals over the market's limit, and Redis keys without an
expiry afterwards (the slots' epochs, `lanes:epoch:{eN}`, are documented as having none:
docs/DESIGN.md, "Restart guard"). `--limit` scales the market (and the budget) so the run
ends in minutes on a small host.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
import uuid
from collections import Counter
from typing import Any

import redis

from bench.faults.rig import Run, drain_queue, http_json, running_rig
from bench.faults.runner import explain_over

__all__ = ["main", "soak"]

_SENTINELS = ("lanes:epoch:",)  # documented keys without expiry


def _send(sqs: Any, url: str, bodies: list[tuple[str, str]]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(n), "MessageBody": body}
                   for n, (_id, body) in enumerate(bodies[start : start + 10])]  # fmt: skip
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def _unexpiring(port: int) -> list[str]:
    with redis.Redis(port=port) as client:
        return [
            key.decode()
            for key in client.scan_iter(count=1000)
            if client.ttl(key) == -1 and not key.decode().startswith(_SENTINELS)
        ]


def soak(
    *,
    jobs: int,
    workers: int,
    slots: int,
    visibility: int,
    restarts: int,
    limit: int,
    timeout: float,
) -> dict[str, Any]:
    """One soak run; returns its counts."""
    with running_rig(limit) as rig:
        prefix = f"s{uuid.uuid4().hex[:8]}"
        urls, dead_urls = rig.provision(prefix)
        sqs = rig.sqs()
        ids = [f"{prefix}-h{n}" for n in range(jobs)]
        bodies = [
            (job_id, json.dumps({"kind": "call", "market": "acme", "seller": "s-1", "id": job_id,
                                 "payload": {"endpoint": "ship", "json": {"key": job_id}}}))
            for job_id in ids
        ]  # fmt: skip
        _send(sqs, urls["high"], bodies)
        settings = {"LANES_CONCURRENCY": str(slots), "LANES_VISIBILITY_TIMEOUT": str(visibility)}
        run = Run(rig, prefix, workers, env=settings)
        wanted = set(ids)
        dead: dict[str, dict[str, Any]] = {}

        def done() -> set[str]:
            return set(http_json(f"{rig.market_url}/finished")) & wanted

        started, started_wall = time.monotonic(), time.time()
        restarted: list[float] = []
        try:
            for _ in range(workers):
                run.spawn()
            while time.monotonic() - started < timeout:
                for url in dead_urls:
                    for message in drain_queue(sqs, url):
                        dead.setdefault(json.loads(message["Body"]).get("id", "?"), message)
                finished = len(done() | (set(dead) & wanted))
                # Restarts at 1/(restarts+1), 2/(restarts+1), ... of the jobs finished.
                if len(restarted) < restarts and finished >= jobs * (len(restarted) + 1) / (
                    restarts + 1
                ):
                    rig.redis.stop()
                    rig.redis.start()  # empty: no persistence
                    restarted.append(round(time.monotonic() - started, 1))
                if finished >= jobs:
                    break
                time.sleep(2.0)
        finally:
            run.stop_all(signal.SIGTERM)
        seconds = time.monotonic() - started
        report = http_json(f"{rig.market_url}/report")
        stats = http_json(f"{rig.market_url}/stats")
        if stats["refused"]:
            explain_over(rig.market_url, started_wall)
        finished_ids = set(report["results"]) & wanted
        queued = {
            json.loads(message["Body"]).get("id") for message in drain_queue(sqs, urls["high"])
        }
        effects = Counter(
            {key: count for key, count in _effect_counts(rig.market_url).items() if key in wanted}
        )
        reasons = Counter(
            message.get("MessageAttributes", {}).get("lanes.reason", {}).get("StringValue", "-")
            for message in dead.values()
        )
        return {
            "jobs": jobs,
            "workers": workers,
            "slots": slots,
            "visibility s": visibility,
            "limit/s": limit,
            "seconds": round(seconds, 1),
            "redis restarts at s": restarted,
            "done": len(finished_ids),
            "dead-lettered": len(set(dead) & wanted),
            "dead without a reason": reasons.get("-", 0),
            "dead reasons": dict(reasons),
            "lost": len(wanted - finished_ids - set(dead) - queued),
            "still queued": len(queued & wanted),
            "side effects once": sum(1 for count in effects.values() if count == 1),
            "side effects twice": sum(1 for count in effects.values() if count > 1),
            "side effects never": jobs - len(effects),
            "over the limit": stats["refused"],
            "keys without expiry": _unexpiring(rig.redis.port),
            "heartbeat may_run_twice": sum(
                log.read_text(errors="replace").count("heartbeat.may_run_twice")
                for log in rig.workdir.glob(f"{prefix}-worker-*.log")
            ),
        }


def _effect_counts(market_url: str) -> dict[str, int]:
    counts: dict[str, int] = http_json(f"{market_url}/effects")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slots", type=int, default=1000, help="LANES_CONCURRENCY per worker")
    parser.add_argument(
        "--visibility", type=int, default=120, help="LANES_VISIBILITY_TIMEOUT, seconds"
    )
    parser.add_argument("--restarts", type=int, default=2, help="Redis restarted empty")
    parser.add_argument("--limit", type=int, default=40, help="the market's requests/s")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to drain")
    args = parser.parse_args()
    counts = soak(
        jobs=args.jobs, workers=args.workers, slots=args.slots, visibility=args.visibility,
        restarts=args.restarts,
        limit=args.limit, timeout=args.timeout,
    )  # fmt: skip
    for name, value in counts.items():
        print(f"{name:24} {value}")


if __name__ == "__main__":
    main()
