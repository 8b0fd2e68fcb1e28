"""Where job results go (`settings.results_url`): a JSON-lines file, SQS queue or HTTP callback.

Each sink is the one owner of its connection or file: `async with`, `aclose()`
safe twice. `send` returns once the record is stored or raises `SinkError`
(`SinkRefused` when retrying cannot help, e.g. the backend refused it with a 4xx).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import IO, Any, Protocol

import aiohttp
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from lanes.errors import LanesError
from lanes.resource import AsyncResource
from worker.sqs import MESSAGE_BYTES, OutgoingMessage, SqsClient, SqsError

__all__ = [
    "SQS_MAX_PARTS",
    "FileSink",
    "HttpSink",
    "ResultSink",
    "SinkError",
    "SinkRefused",
    "SqsSink",
    "open_sink",
]


class SinkError(LanesError):
    """A result could not be stored now; a later try may succeed."""

    permanent = False


class SinkRefused(SinkError):
    """The backend refused the result: a retry would fail the same way."""

    permanent = True


class _Retryable(SinkError):
    """A failure worth another try inside `HttpSink.send`."""


class ResultSink(Protocol):
    async def send(self, record: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)


class FileSink(AsyncResource):
    """Appends one JSON line per result to `path` (the default for local runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        self._lock = asyncio.Lock()

    async def send(self, record: dict[str, Any]) -> None:
        async with self._lock:
            if self._closed:
                raise SinkError(f"results file {self.path} is closed")
            try:
                if self._handle is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._handle = self.path.open("a", encoding="utf-8")
                self._handle.write(_line(record) + "\n")
                self._handle.flush()
            except OSError as exc:
                raise SinkError(f"cannot write results file {self.path}: {exc}") from exc

    async def aclose(self) -> None:
        async with self._lock:
            await super().aclose()

    async def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# How many parts one result may take. A queue's size limit is its MaximumMessageSize,
# SQS's largest (MESSAGE_BYTES) when it does not say.
SQS_MAX_PARTS = 100


def _parts(record: dict[str, Any], max_bytes: int, max_parts: int, where: str) -> list[str]:
    """The message bodies of `record`: itself when it fits in `max_bytes`, else parts that
    each fit: the record without `data`, plus `part` (1..n), `parts` (n) and `data_text`, a
    slice of `data` as JSON text (joined in part order, the slices are `data`'s JSON). More
    than `max_parts` parts is `SinkRefused`: such a result never fits."""
    whole = _line(record)
    if len(whole.encode()) <= max_bytes:
        return [whole]
    text = json.dumps(record.get("data"), separators=(",", ":"), ensure_ascii=True, default=str)
    head = {key: value for key, value in record.items() if key != "data"}
    room = max_bytes - len(_line({**head, "part": max_parts, "parts": max_parts, "data_text": ""}))
    pieces: list[str] = []
    start = 0
    while start < len(text) and room > 0 and len(pieces) <= max_parts:
        size = room
        # The slice is escaped once more inside the part (a quote takes two bytes).
        while size > 1 and len(json.dumps(text[start : start + size])) - 2 > room:
            size //= 2
        pieces.append(text[start : start + size])
        start += size
    if room <= 0 or len(pieces) > max_parts:
        raise SinkRefused(
            f"{where}: a result of {len(whole.encode())} bytes does not fit in "
            f"{max_parts} parts of {max_bytes} bytes"
        )
    count = len(pieces)
    return [
        _line({**head, "part": index, "parts": count, "data_text": piece})
        for index, piece in enumerate(pieces, start=1)
    ]


class SqsSink(AsyncResource):
    """Sends each result as one message to the queue `name` (the SQS client is borrowed); a
    result over the queue's `MaximumMessageSize` (read once; `max_bytes` caps it) goes as
    several parts (`_parts`), one too large for `max_parts` is refused for good."""

    def __init__(
        self,
        sqs: SqsClient,
        name: str,
        *,
        max_bytes: int | None = None,
        max_parts: int = SQS_MAX_PARTS,
    ) -> None:
        self._sqs = sqs
        self.name = name
        self._max_bytes = max_bytes
        self._max_parts = max_parts
        self._queue_bytes: int | None = None

    async def _limit(self, url: str) -> int:
        if self._queue_bytes is None:
            found = await self._sqs.attributes(url, ["MaximumMessageSize"])
            self._queue_bytes = int(found.get("MaximumMessageSize") or MESSAGE_BYTES)
        return min(self._queue_bytes, self._max_bytes or self._queue_bytes)

    async def send(self, record: dict[str, Any]) -> None:
        try:
            url = await self._sqs.queue_url(self.name)
            limit = await self._limit(url)
        except SqsError as exc:
            raise SinkError(f"results queue {self.name}: {exc}") from exc
        bodies = _parts(record, limit, self._max_parts, f"results queue {self.name}")
        try:
            # One at a time: a batch's total size has the same limit as one message.
            for body in bodies:
                await self._sqs.send_batch(url, [OutgoingMessage(body=body)])
        except SqsError as exc:
            raise SinkError(f"results queue {self.name}: {exc}") from exc

    async def _close(self) -> None:
        return  # the SQS client belongs to whoever made it


class HttpSink(AsyncResource):
    """POSTs each result as JSON to `url`, retrying 5xx, 408, 429 and network failures.

    With a `token`, each request carries `Authorization: Bearer <token>`.
    """

    def __init__(
        self,
        url: str,
        *,
        token: SecretStr | None = None,
        session: aiohttp.ClientSession | None = None,
        attempts: int = 5,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        self._session = session
        self._owns_session = session is None
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise SinkError(f"results callback {self.url} is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _post_once(self, body: str) -> None:
        try:
            async with self._client().post(self.url, data=body, headers=self._headers) as answer:
                if answer.status < 300:
                    return
                text = " ".join((await answer.text())[:200].split())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retryable(f"results callback {self.url}: {exc or type(exc).__name__}") from exc
        failure = f"results callback {self.url} answered {answer.status}: {text}"
        if answer.status >= 500 or answer.status in (408, 429):
            raise _Retryable(failure)
        raise SinkRefused(failure)

    async def send(self, record: dict[str, Any]) -> None:
        body = _line(record)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._post_once(body)

    async def _close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()


def open_sink(
    results_url: str, sqs: SqsClient, *, token: SecretStr | None = None
) -> FileSink | SqsSink | HttpSink:
    """The sink `results_url` names: `file:PATH`, `sqs:QUEUE` or `http(s)://...` (with an
    optional bearer `token`, from `LANES_CREDENTIALS__RESULTS__TOKEN`)."""
    if results_url.startswith("file:"):
        return FileSink(Path(results_url.removeprefix("file:")))
    if results_url.startswith("sqs:"):
        return SqsSink(sqs, results_url.removeprefix("sqs:"))
    return HttpSink(results_url, token=token)
