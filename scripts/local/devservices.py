"""`lanes services`: Redis, moto's SQS and market simulators for running lanes by hand.

Starts each as a child process, prints the `export` lines a shell needs (settings,
the simulators' test credentials, dummy AWS keys) and the next commands, then
stays up until Ctrl-C, when it stops everything it started. A simulator port that
another process holds fails the start with one line, before anything starts; a child
that exits later stops the rest with one line. The exported `LANES_CONFIG` names
examples/lanes.toml, or a copy of it with the base URLs of the simulators' ports.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from lanes.errors import LanesError
from markets.simulators import local_ports
from scripts.local.moto_server import QuickMotoServer
from scripts.local.services import (
    RedisServer,
    SimulatorServer,
    credential_variables,
    port_in_use,
)
from scripts.tools.inputs import UsageError

__all__ = ["EXAMPLES", "export_lines", "run_services", "services_config"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# How often the running services look for a child that ended.
_WATCH_SECONDS = 0.5


def export_lines(
    redis_url: str, sqs_url: str, config: Path, markets: Sequence[str] | None = None
) -> list[str]:
    values = {
        "LANES_CONFIG": str(config),
        "LANES_REDIS_URL": redis_url,
        "LANES_SQS_ENDPOINT_URL": sqs_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        **credential_variables(list(local_ports()) if markets is None else markets),
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def _base_urls(text: str) -> dict[str, str]:
    markets = tomllib.loads(text).get("markets", {})
    return {name: str(table.get("base_url", "")) for name, table in markets.items()}


def services_config(simulators: list[SimulatorServer], directory: Path) -> Path:
    """examples/lanes.toml when its base URLs are the simulators', else a copy in
    `directory` with theirs."""
    example = EXAMPLES / "lanes.toml"
    text = example.read_text(encoding="utf-8")
    written = _base_urls(text)
    wanted = {simulator.market: simulator.base_url for simulator in simulators}
    if all(written.get(market) == url for market, url in wanted.items()):
        return example
    for market, url in wanted.items():
        text = text.replace(f'base_url = "{written.get(market)}"', f'base_url = "{url}"')
    if any(_base_urls(text).get(market) != url for market, url in wanted.items()):
        raise LanesError(f"cannot set the simulators' base URLs in {example}: {wanted}")
    copy = directory / "lanes.toml"
    copy.write_text(text, encoding="utf-8")
    return copy


def _check_ports(ports: Mapping[str, int]) -> None:
    seen: dict[int, str] = {}
    for market, port in ports.items():
        if port in seen:
            raise UsageError(f"--{seen[port]}-port and --{market}-port are both {port}")
        seen[port] = market
        if port_in_use(port):
            raise LanesError(
                f"port {port} is taken by another process: stop it, or choose another with "
                f"--{market}-port"
            )


def run_services(ports: Mapping[str, int], out: TextIO | None = None) -> int:
    """Serve each market's simulator on its port (`ports`: market -> port) until SIGINT or
    SIGTERM, then 0; a port taken or a child that ended raises `LanesError` (one line,
    exit 1)."""
    out = out or sys.stdout
    if not (EXAMPLES / "lanes.toml").is_file():
        raise LanesError(f"lanes services runs from a clone of lanes: {EXAMPLES} is missing")
    _check_ports(ports)
    # Started in the background by a shell, SIGINT comes ignored (and Python then installs
    # no handler for it): Ctrl-C, or `kill -INT`, would never stop the services.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    simulators = [SimulatorServer(market, 10.0, port=port) for market, port in ports.items()]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="lanes-services-") as directory,
            RedisServer() as redis,
            QuickMotoServer() as moto,
            contextlib.ExitStack() as started,
        ):
            for simulator in simulators:
                started.enter_context(simulator)
            config = services_config(simulators, Path(directory))
            print("# lanes services are up; paste these lines into another shell:", file=out)
            for line in export_lines(redis.url, moto.url, config, list(ports)):
                print(line, file=out)
            where = "examples/lanes.toml"
            if config.parent != EXAMPLES:
                where = "a copy of examples/lanes.toml with these ports, removed at Ctrl-C"
            print(
                "# "
                + ", ".join(f"{each.market} {each.base_url}" for each in simulators)
                + f" ({where})\n"
                f"# then: lanes provision && lanes enqueue --market {next(iter(ports))} "
                f"--lane high --file {EXAMPLES / 'jobs.jsonl'} && lanes worker\n"
                "# Ctrl-C here stops Redis, moto and the simulators.",
                file=out,
                flush=True,
            )
            children = (redis, moto, *simulators)
            while not any(child.exit_code is not None for child in children):
                time.sleep(_WATCH_SECONDS)
            ended = next(child for child in children if child.exit_code is not None)
            raise LanesError(
                f"the {ended.name} on port {ended.port} exited (exit code {ended.exit_code}); "
                "the other services are stopped"
            )
    except KeyboardInterrupt:
        print("\nlanes services: stopped", file=out)
    return 0
