"""The API answers within its own OpenAPI document: every error in the one shape (`Problem`:
`detail`, and `errors` with `index`, `field`, `reason`), every status a route answers declared,
and schemathesis, run against the real app served on loopback, finds no server error, no
answer outside the schema and no undeclared status."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from scripts.api.app import create_app
from scripts.local.services import free_port
from tests.fixtures_api import KEY, ApiEnv
from tests.fixtures_markets import COUPANG_VENDOR
from tests.fixtures_worker import wait_until

# Examples per operation and phase: enough for every phase to reach each status, small enough
# for the run to take seconds.
MAX_EXAMPLES = 30
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
AS_JSON = {"Content-Type": "application/json"}
COLLECT = "/v1/markets/{market}/sellers/{seller}/orders/{order_id}/collect"


def _problem(answer: httpx.Response) -> tuple[int, list[str | None]]:
    body = answer.json()
    assert set(body) == {"detail", "errors"}, body
    assert all(set(error) == {"index", "field", "reason"} for error in body["errors"])
    return answer.status_code, [error["field"] for error in body["errors"]]


@pytest.mark.parametrize(
    ("method", "path", "request_args", "status", "field"),
    [
        ("POST", "/v1/jobs?lane=low", {}, 400, "body"),
        ("POST", "/v1/jobs?lane=low", {"content": b"[{", "headers": AS_JSON}, 400, "body"),
        ("POST", "/v1/jobs?lane=low", {"content": b"\xff\xfe", "headers": AS_JSON}, 400, "body"),
        ("POST", "/v1/jobs?lane=fast", {"json": {}}, 422, "lane"),
        ("POST", "/v1/jobs?lane=low", {"json": []}, 422, "body"),
        ("POST", "/v1/jobs?lane=low", {"json": {}, "headers": {"Idempotency-Key": "a b"}}, 422,
         "Idempotency-Key"),
        ("POST", f"/v1/markets/coupang/sellers/{COUPANG_VENDOR}/orders/1/collect?wait=0", {},
         422, "wait"),
        ("POST", "/v1/markets/acme/sellers/s/orders/1/collect", {}, 404, "market"),
        ("GET", "/v1/jobs/no-such-job", {}, 404, "job_id"),
        ("GET", "/v1/status?market=acme", {}, 404, "market"),
        ("GET", "/v1/nowhere", {}, 404, None),
    ],
)  # fmt: skip
async def test_every_refusal_is_a_problem_naming_its_field(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    request_args: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    """A missing or malformed body, a wrong parameter or header, an unknown job, market or
    route: the status, and one shape naming what is wrong."""
    answer = await client.request(method, path, **request_args)
    assert _problem(answer)[0] == status, answer.text
    assert field in _problem(answer)[1]


async def test_every_answer_is_declared_with_its_model(client: httpx.AsyncClient) -> None:
    """Each route's document lists what it answers; every error status is a `Problem`, and
    FastAPI's own validation shape appears nowhere."""
    document = (await client.get("/openapi.json")).json()
    declared = {
        (method.upper(), path): sorted(operation["responses"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert declared[("POST", "/v1/jobs")] == [
        "202",
        "207",
        "400",
        "401",
        "409",
        "413",
        "422",
        "503",
    ]
    collect = ["200", "202", "401", "404", "413", "422", "502", "503"]
    assert (
        declared[("POST", "/v1/markets/{market}/sellers/{seller}/orders/{order_id}/collect")]
        == collect
    )
    assert declared[("GET", "/v1/jobs/{job_id}")] == ["200", "401", "404", "413", "422", "503"]
    assert declared[("GET", "/healthz")] == ["200", "503"]
    for (_method, _path), statuses in declared.items():
        operation = document["paths"][_path][_method.lower()]
        for status in statuses:
            if status.startswith("4") or (status == "503" and _path != "/healthz"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (_path, status)
    assert "HTTPValidationError" not in str(document)  # fmt: skip


@pytest.mark.slow  # a process of its own, about 20 s on 2 shared cores
@pytest.mark.timeout(180)
async def test_schemathesis_finds_no_failure(
    api_env: ApiEnv, exit_stack: AsyncExitStack, tmp_path: Path
) -> None:
    """schemathesis (every phase, `MAX_EXAMPLES` per operation) against the app served by
    uvicorn on loopback, on real Redis, moto and the simulators: exit 0, every case passed."""
    app = create_app(api_env.settings, api_env.config)
    await exit_stack.enter_async_context(app.router.lifespan_context(app))
    # This Redis is the tests' own and emptied: a budget's first window would wait as if
    # data were lost (rule 10).
    app.state.runtime.limiter._restart_guard = False
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                       access_log=False)
    )  # fmt: skip
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await wait_until(started)
        run = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("schemathesis")), "run",
            f"http://127.0.0.1:{port}/openapi.json", "--header", f"X-API-Key: {KEY}",
            "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
            "--seed", "2025", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_PROXY": "127.0.0.1"},
            cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
        )  # fmt: skip
        out = (await run.communicate())[0].decode()
    finally:
        server.should_exit = True
        await serving
    assert run.returncode == 0, out
    found = re.search(r"(\d+) generated, (\d+) passed", out)
    assert found is not None, out
    assert found[1] == found[2]
    assert int(found[1]) > 100, out  # every operation was reached, not skipped
