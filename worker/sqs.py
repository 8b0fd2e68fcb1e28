"""The one owner of an SQS client: receive, batched send/delete/visibility, queue look-ups.

Every botocore or aiohttp failure is wrapped as `SqsError` (a missing queue as
`QueueMissing`), and every batch call reads its per-entry `Failed` list, so a
caller never mistakes a partial batch for a whole one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from lanes.errors import LanesError
from lanes.resource import AsyncResource

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        ReceiveMessageRequestTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

__all__ = [
    "BATCH_ENTRIES",
    "MESSAGE_BYTES",
    "Coalescer",
    "OutgoingMessage",
    "QueueMissing",
    "SqsClient",
    "SqsError",
    "SqsMessage",
    "default_region",
]

Item = TypeVar("Item")
BATCH_ENTRIES = 10
# SQS's largest message body, and batch: 1 MiB (/work/shared/AWS.md; moto agrees).
MESSAGE_BYTES = 1024 * 1024
# Entries a batch reports failed through no fault of ours are sent again this often.
_RESEND_ROUNDS = 5
_RESEND_PAUSE = 0.2
# Long polls wait up to 20 s: the read timeout must outlast them.
_READ_TIMEOUT = 30.0
_MISSING_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)


class SqsError(LanesError):
    """An SQS call failed (network, service or a batch entry the service refused)."""


class QueueMissing(SqsError):
    """The named queue does not exist."""


@dataclass(frozen=True, slots=True)
class SqsMessage:
    """One received message: system `attributes` and string `message_attributes`."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    message_attributes: dict[str, str] = field(default_factory=dict)

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", "1"))

    @property
    def sent_at(self) -> datetime:
        millis = int(self.attributes.get("SentTimestamp", "0"))
        return datetime.fromtimestamp(millis / 1000, tz=UTC)

    @classmethod
    def from_response(cls, raw: MessageTypeDef) -> SqsMessage:
        strings = {
            name: value["StringValue"]
            for name, value in raw.get("MessageAttributes", {}).items()
            if "StringValue" in value
        }
        return cls(
            message_id=raw.get("MessageId", ""),
            receipt_handle=raw.get("ReceiptHandle", ""),
            body=raw.get("Body", ""),
            attributes={str(name): value for name, value in raw.get("Attributes", {}).items()},
            message_attributes=strings,
        )


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to send; `attributes` become string message attributes."""

    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    delay_seconds: int = 0
    group_id: str | None = None

    def size(self) -> int:
        """Bytes SQS counts against the payload limit: body plus attribute names and values."""
        extra = sum(
            len(k.encode()) + len(v.encode()) + len(b"String") for k, v in self.attributes.items()
        )
        return len(self.body.encode()) + extra

    def entry(self, entry_id: str) -> SendMessageBatchRequestEntryTypeDef:
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": entry_id, "MessageBody": self.body}
        if self.attributes:
            values: dict[str, MessageAttributeValueTypeDef] = {
                name: {"DataType": "String", "StringValue": value}
                for name, value in self.attributes.items()
            }
            entry["MessageAttributes"] = values
        if self.delay_seconds:
            entry["DelaySeconds"] = self.delay_seconds
        if self.group_id is not None:
            entry["MessageGroupId"] = self.group_id
        return entry


def _queue_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _chunks(items: Sequence[Any], size: int = BATCH_ENTRIES) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _send_chunks(messages: Sequence[OutgoingMessage]) -> Iterator[list[OutgoingMessage]]:
    """At most 10 entries and 1 MiB per batch; a single message over 1 MiB is SQS's to refuse."""
    chunk: list[OutgoingMessage] = []
    chunk_bytes = 0
    for message in messages:
        size = message.size()
        if chunk and (len(chunk) == BATCH_ENTRIES or chunk_bytes + size > MESSAGE_BYTES):
            yield chunk
            chunk, chunk_bytes = [], 0
        chunk.append(message)
        chunk_bytes += size
    if chunk:
        yield chunk


def default_region(endpoint_url: str | None) -> str | None:
    """AWS_REGION (else AWS_DEFAULT_REGION); with neither, us-east-1 for a local endpoint
    (moto accepts any region) and None for AWS itself (botocore's NoRegionError)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None and endpoint_url:
        return "us-east-1"
    return region


class SqsClient(AsyncResource):
    """Owns one aioboto3 SQS client; `async with` or `aclose()` (safe twice).

    The client opens on first use, so a caller may also just call methods and
    `aclose()` at the end.
    """

    def __init__(self, *, endpoint_url: str | None, region: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.region = region or default_region(endpoint_url)
        self._stack = AsyncExitStack()
        self._client: SQSClient | None = None
        self._opening = asyncio.Lock()
        self._urls: dict[str, str] = {}

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def _close(self) -> None:
        self._client = None
        await self._stack.aclose()

    @property
    def raw(self) -> SQSClient:
        """The aiobotocore client, for rare calls (open the owner first)."""
        if self._client is None:
            raise SqsError("SQS client is not open (use `async with SqsClient(...)`)")
        return self._client

    async def _open(self) -> SQSClient:
        async with self._opening:
            if self._closed:
                raise SqsError("SQS client is closed")
            if self._client is None:
                config = AioConfig(
                    read_timeout=_READ_TIMEOUT,
                    connect_timeout=5,
                    max_pool_connections=64,
                    retries={"max_attempts": 3, "mode": "standard"},
                )
                session = aioboto3.Session()
                opened: SQSClient = await self._stack.enter_async_context(
                    session.client(
                        "sqs",
                        endpoint_url=self.endpoint_url,
                        region_name=self.region,
                        config=config,
                    )
                )
                self._client = opened
                return opened
            return self._client

    @asynccontextmanager
    async def _calling(self, action: str, queue: str) -> AsyncIterator[SQSClient]:
        """Yield the client; wrap any backend failure of `action` on `queue` as our own."""
        client = self._client or await self._open()
        try:
            yield client
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING_CODES:
                self._urls = {n: u for n, u in self._urls.items() if _queue_of(u) != queue}
                raise QueueMissing(f"SQS queue {queue!r} does not exist") from exc
            message = exc.response.get("Error", {}).get("Message", str(exc))
            raise SqsError(f"SQS {action} on {queue!r} failed: {code}: {message}") from exc
        except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise SqsError(f"SQS {action} on {queue!r} failed: {exc}") from exc

    async def queue_url(self, name: str) -> str:
        """The URL of queue `name` (cached); `QueueMissing` if there is none."""
        cached = self._urls.get(name)
        if cached is not None:
            return cached
        async with self._calling("GetQueueUrl", name) as client:
            answer = await client.get_queue_url(QueueName=name)
        url = answer["QueueUrl"]
        self._urls[name] = url
        return url

    async def queue_arn(self, name: str) -> str:
        url = await self.queue_url(name)
        return (await self.attributes(url, ("QueueArn",)))["QueueArn"]

    async def attributes(self, url: str, names: Sequence[str] = ("All",)) -> dict[str, str]:
        async with self._calling("GetQueueAttributes", _queue_of(url)) as client:
            answer = await client.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=list(names),  # type: ignore[arg-type]
            )
        return {str(name): value for name, value in answer.get("Attributes", {}).items()}

    async def create_queue(self, name: str, attributes: Mapping[str, str]) -> str:
        """Create queue `name` with `attributes`; returns its URL (for `lanes provision`)."""
        async with self._calling("CreateQueue", name) as client:
            answer = await client.create_queue(
                QueueName=name,
                Attributes=dict(attributes),  # type: ignore[arg-type]
            )
        url = answer["QueueUrl"]
        self._urls[name] = url
        return url

    async def set_attributes(self, url: str, attributes: Mapping[str, str]) -> None:
        async with self._calling("SetQueueAttributes", _queue_of(url)) as client:
            await client.set_queue_attributes(
                QueueUrl=url,
                Attributes=dict(attributes),  # type: ignore[arg-type]
            )

    async def receive(
        self,
        url: str,
        *,
        max_messages: int,
        wait_seconds: int,
        visibility_timeout: int | None = None,
    ) -> list[SqsMessage]:
        """Up to `max_messages` (1..10) with all system and message attributes."""
        request: ReceiveMessageRequestTypeDef = {
            "QueueUrl": url,
            "MaxNumberOfMessages": max(1, min(BATCH_ENTRIES, max_messages)),
            "WaitTimeSeconds": wait_seconds,
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout is not None:
            request["VisibilityTimeout"] = visibility_timeout
        async with self._calling("ReceiveMessage", _queue_of(url)) as client:
            answer = await client.receive_message(**request)
        return [SqsMessage.from_response(raw) for raw in answer.get("Messages", [])]

    async def send_batch(self, url: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Send all `messages`; returns their message ids (in order) once every one was accepted.

        Entries the service failed on its side are sent again; a sender-fault
        entry (our mistake, e.g. too large) raises `SqsError` naming it.
        """
        queue = _queue_of(url)
        ids: list[str] = []
        for chunk in _send_chunks(messages):
            pending = {f"m{index}": message for index, message in enumerate(chunk)}
            sent: dict[str, str] = {}
            for round_ in range(_RESEND_ROUNDS):
                async with self._calling("SendMessageBatch", queue) as client:
                    answer = await client.send_message_batch(
                        QueueUrl=url,
                        Entries=[message.entry(key) for key, message in pending.items()],
                    )
                sent.update((ok["Id"], ok["MessageId"]) for ok in answer.get("Successful", []))
                failed = answer.get("Failed", [])
                for entry in failed:
                    if entry.get("SenderFault"):
                        raise SqsError(
                            f"SQS refused message {entry['Id']} for {queue!r}: "
                            f"{entry.get('Code')}: {entry.get('Message', '')}"
                        )
                pending = {entry["Id"]: pending[entry["Id"]] for entry in failed}
                if not pending:
                    break
                await asyncio.sleep(_RESEND_PAUSE * (round_ + 1))
            if pending:
                raise SqsError(
                    f"SQS kept failing {len(pending)} message(s) for {queue!r} "
                    f"after {_RESEND_ROUNDS} rounds"
                )
            ids.extend(sent[f"m{index}"] for index in range(len(chunk)))
        return ids

    async def delete_batch(self, url: str, receipts: Sequence[str]) -> list[str]:
        """Delete by receipt handle; returns the handles that failed (gone counts as failed)."""
        queue = _queue_of(url)
        failed: list[str] = []
        for chunk in _chunks(receipts):
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": f"d{index}", "ReceiptHandle": receipt} for index, receipt in enumerate(chunk)
            ]
            async with self._calling("DeleteMessageBatch", queue) as client:
                answer = await client.delete_message_batch(QueueUrl=url, Entries=entries)
            failed.extend(chunk[int(entry["Id"][1:])] for entry in answer.get("Failed", []))
        return failed

    async def change_visibility_batch(
        self, url: str, items: Sequence[tuple[str, int]]
    ) -> list[str]:
        """Set each (receipt handle, seconds); returns the handles that failed."""
        queue = _queue_of(url)
        failed: list[str] = []
        for chunk in _chunks(items):
            entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                {"Id": f"v{index}", "ReceiptHandle": receipt, "VisibilityTimeout": seconds}
                for index, (receipt, seconds) in enumerate(chunk)
            ]
            async with self._calling("ChangeMessageVisibilityBatch", queue) as client:
                answer = await client.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            failed.extend(chunk[int(entry["Id"][1:])][0] for entry in answer.get("Failed", []))
        return failed


class Coalescer(Generic[Item]):
    """Coalesces single calls into one batch call per queue (at most 10, `linger` seconds).

    `call(url, items)` returns the receipts that failed; each submitter learns its own.
    """

    def __init__(
        self,
        call: Callable[[str, Sequence[Item]], Awaitable[list[str]]],
        receipt_of: Callable[[Item], str],
        linger: float,
    ) -> None:
        self._call = call
        self._receipt_of = receipt_of
        self._linger = linger
        self._pending: dict[str, list[tuple[Item, asyncio.Future[bool]]]] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, url: str, item: Item) -> bool:
        """True once the call succeeded for `item`; False if SQS reported it failed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        queue = self._pending.setdefault(url, [])
        queue.append((item, future))
        if len(queue) >= BATCH_ENTRIES:
            self._start_flush(url, 0.0)
        elif len(queue) == 1:
            self._start_flush(url, self._linger)
        return await asyncio.shield(future)

    def _start_flush(self, url: str, delay: float) -> None:
        task = asyncio.create_task(self._flush(url, delay))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, url: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        batch = self._pending.pop(url, [])[:]
        if not batch:
            return
        try:
            failed = set(await self._call(url, [item for item, _ in batch]))
        except SqsError as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for item, future in batch:
            if not future.done():
                future.set_result(self._receipt_of(item) not in failed)

    async def drain(self) -> None:
        """Flush whatever is pending now (at shutdown)."""
        for url in list(self._pending):
            self._start_flush(url, 0.0)
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
