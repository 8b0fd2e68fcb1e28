"""The HTTP API's bounds, measured: what large bodies with a wrong key cost the server, and
how long concurrent 1,000-job requests take to answer under a deadline.

Starts its own Redis and moto, provisions Coupang's queues, serves the app with
uvicorn on loopback in this process, then prints

- the process's RSS before and after `--big` POSTs of 50 MB with a wrong key
  (streamed by the client in 64 KiB chunks, so the client holds none of it),
  their statuses and times, and one with the right key (413);
- for `--clients` concurrent 1,000-job POSTs under an Idempotency-Key each,
  repeated until each answers 202: the answers (202/207), the slowest one, and
  the lane queue's depth at the end (each job sent once: clients x 1,000).

    python -m bench.api_limits --clients 4 --deadline 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import uvicorn

import markets
from lanes import Lane
from lanes.logs import configure_logging
from scripts.api.app import create_app
from scripts.api.settings import ApiSettings
from scripts.local.services import MotoServer, RedisServer, free_port
from scripts.tools.provision import provision
from worker.queues import QueueName
from worker.sqs import SqsClient

KEY = "bench-key-5f4e3d2c1b"
CHUNK = 64 * 1024
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "lanes.toml"


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _big_body(megabytes: int) -> AsyncIterator[bytes]:
    for _ in range(megabytes * 1024 * 1024 // CHUNK):
        yield b" " * CHUNK


def _jobs(client: int) -> list[dict[str, object]]:
    return [
        {"kind": "collect_order", "market": "coupang", "seller": "A00012345",
         "payload": {"shipment_box_id": 600_000_000 + client * 1000 + i}}
        for i in range(1000)
    ]  # fmt: skip


async def _bodies(api: httpx.AsyncClient, count: int) -> None:
    before = _rss_mib()
    for key in ["wrong-key"] * count + [KEY]:
        started = time.monotonic()
        try:
            answer = await api.post("/v1/jobs?lane=low", content=_big_body(50),
                                    headers={"X-API-Key": key})  # fmt: skip
            status = str(answer.status_code)
        except httpx.TransportError as exc:
            # Answered before the body was read, the connection is closed; a client still
            # writing the body may see the close before the answer.
            status = f"connection closed ({type(exc).__name__})"
        print(f"50 MB, {'right' if key == KEY else 'wrong'} key: {status} "
              f"in {time.monotonic() - started:.3f} s", flush=True)  # fmt: skip
    print(f"RSS before {before:.0f} MiB, after {_rss_mib():.0f} MiB", flush=True)


async def _until_sent(api: httpx.AsyncClient, client: int, seen: list[tuple[int, float]]) -> None:
    while True:
        started = time.monotonic()
        headers = {"X-API-Key": KEY, "Idempotency-Key": f"bench-{client}"}
        answer = await api.post("/v1/jobs?lane=medium", json=_jobs(client), headers=headers)
        seen.append((answer.status_code, time.monotonic() - started))
        if answer.status_code != 207:
            return


async def main(args: argparse.Namespace) -> None:
    configure_logging("warning")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")  # moto takes any
    with RedisServer() as redis, MotoServer() as moto:
        prefix = "bench"
        async with SqsClient(endpoint_url=moto.url, region="us-east-1") as sqs:
            await provision(sqs, prefix=prefix, markets=["coupang"], visibility_timeout=30)
            settings = ApiSettings(redis_url=redis.url, sqs_endpoint_url=moto.url,
                                queue_prefix=prefix, api_keys=(KEY,),  # type: ignore[arg-type]
                                api_deadline=args.deadline)  # fmt: skip
            app = create_app(settings, markets.load_config(EXAMPLES))
            port = free_port()
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                    access_log=False)  # fmt: skip
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, not an event
                await asyncio.sleep(0.05)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                             timeout=600) as api:  # fmt: skip
                    await _bodies(api, args.big)
                    seen: list[tuple[int, float]] = []
                    started = time.monotonic()
                    await asyncio.gather(*(_until_sent(api, c, seen) for c in range(args.clients)))
                    statuses = [status for status, _ in seen]
                    url = await sqs.queue_url(QueueName(prefix, "coupang", Lane.MEDIUM).queue)
                    depth = (await sqs.attributes(url))["ApproximateNumberOfMessages"]
                    print(f"{args.clients} clients x 1,000 jobs, deadline {args.deadline:g} s: "
                          f"{len(seen)} answers (202: {statuses.count(202)}, "
                          f"207: {statuses.count(207)}, other: "
                          f"{len(seen) - statuses.count(202) - statuses.count(207)}), slowest "
                          f"{max(t for _, t in seen):.1f} s, all sent in "
                          f"{time.monotonic() - started:.1f} s; queue depth {depth}",
                          flush=True)  # fmt: skip
            finally:
                server.should_exit = True
                await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=4, help="50 MB POSTs with a wrong key")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=5.0, help="LANES_API_DEADLINE")
    asyncio.run(main(parser.parse_args()))
