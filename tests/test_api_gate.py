"""The API's gate: the key is checked before a byte of the body is read, and a body over
LANES_API_MAX_BODY_BYTES is refused with 413 however it comes (declared, chunked, or under a
Content-Length that lies), counted as it arrives. The app through httpx, whose ASGI transport
hands the body over only as the app asks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from lanes import Lane
from tests.fixtures_api import KEY, ApiEnv, MakeClient

CHUNK = 64 * 1024
LIMIT = 256 * 1024


class Stream:
    """A body of `chunks` chunks of 64 KiB that counts how many were read."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield b" " * CHUNK


@pytest.fixture
async def limited(api_env: ApiEnv, make_client: MakeClient) -> httpx.AsyncClient:
    """A client without a key on an app whose body limit is 256 KiB."""
    settings = api_env.settings.model_copy(update={"api_max_body_bytes": LIMIT})
    return await make_client(ApiEnv(settings, api_env.config, api_env.sqs), key=None)


@pytest.mark.parametrize("key", [None, "wrong-key-1234"])
async def test_a_wrong_key_is_401_before_the_body_is_read(
    limited: httpx.AsyncClient, key: str | None
) -> None:
    """A 50 MB body streamed with a missing or wrong key: 401 in the one error shape, and not
    one chunk of the body was read."""
    body = Stream(800)
    headers = {"X-API-Key": key} if key else {}
    answer = await limited.post("/v1/jobs", params={"lane": "low"}, content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.headers["Connection"] == "close"  # the unread body is not taken as a request
    assert answer.json()["errors"] == [
        {"index": None, "field": "X-API-Key", "reason": "missing or wrong API key"}
    ]
    assert body.read == 0


async def test_a_declared_length_over_the_limit_is_413_unread(limited: httpx.AsyncClient) -> None:
    body = Stream(800)
    answer = await limited.post(
        "/v1/jobs",
        params={"lane": "low"},
        content=body,
        headers={"X-API-Key": KEY, "Content-Length": str(800 * CHUNK)},
    )
    assert answer.status_code == 413
    assert answer.json()["errors"][0]["field"] == "body"
    assert "LANES_API_MAX_BODY_BYTES" in answer.json()["detail"]
    assert body.read == 0


@pytest.mark.parametrize("declared", [None, str(CHUNK)], ids=["chunked", "content-length-lies"])
async def test_a_body_over_the_limit_is_413_once_the_limit_is_read(
    api_env: ApiEnv, limited: httpx.AsyncClient, declared: str | None
) -> None:
    """Chunked, or under a Content-Length far below what comes: reading stops one chunk past
    the limit, the answer is 413 and nothing is sent."""
    body = Stream(800)
    headers = {"X-API-Key": KEY} | ({"Content-Length": declared} if declared else {})
    answer = await limited.post("/v1/jobs", params={"lane": "low"}, content=body, headers=headers)
    assert answer.status_code == 413, answer.text
    assert answer.json()["errors"][0]["field"] == "body"
    assert body.read == LIMIT // CHUNK + 1
    assert await api_env.depth("coupang", Lane.LOW) == 0


async def test_open_paths_need_no_key(limited: httpx.AsyncClient) -> None:
    assert (await limited.get("/healthz")).status_code == 200
    assert (await limited.get("/openapi.json")).status_code == 200
    assert (await limited.get("/v1/status")).status_code == 401
