"""`lanes services`: Redis, moto's SQS and both market simulators for running lanes by hand.

Starts each as a child process, prints the `export` lines a shell needs (settings,
the simulators' test credentials, dummy AWS keys) and the next commands, then
stays up until Ctrl-C, when it stops everything it started.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import TextIO

from scripts.demo_load import credential_variables
from scripts.moto_server import QuickMotoServer
from scripts.services import RedisServer, SimulatorServer

__all__ = ["export_lines", "run_services"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def export_lines(redis_url: str, sqs_url: str, config: Path) -> list[str]:
    values = {
        "LANES_CONFIG": str(config),
        "LANES_REDIS_URL": redis_url,
        "LANES_SQS_ENDPOINT_URL": sqs_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        **credential_variables(),
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def run_services(coupang_port: int, naver_port: int, out: TextIO | None = None) -> int:
    """Serve until SIGINT or SIGTERM; 0 after a clean stop."""
    out = out or sys.stdout
    # Started in the background by a shell, SIGINT comes ignored (and Python then installs
    # no handler for it): Ctrl-C, or `kill -INT`, would never stop the services.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    coupang = SimulatorServer("coupang", 10.0, port=coupang_port)
    naver = SimulatorServer("naver", 10.0, port=naver_port)
    try:
        with RedisServer() as redis, QuickMotoServer() as moto, coupang, naver:
            print("# lanes services are up; paste these lines into another shell:", file=out)
            for line in export_lines(redis.url, moto.url, EXAMPLES / "lanes.toml"):
                print(line, file=out)
            print(
                f"# Coupang {coupang.base_url}, Naver {naver.base_url} (see examples/lanes.toml)\n"
                "# then: lanes provision && lanes enqueue --market coupang --lane high "
                f"--file {EXAMPLES / 'jobs.jsonl'} && lanes worker\n"
                "# Ctrl-C here stops Redis, moto and the simulators.",
                file=out,
                flush=True,
            )
            signal.pause()
    except KeyboardInterrupt:
        print("\nlanes services: stopped", file=out)
    return 0
