"""moto's SQS server with a cheaper clock and one lock, for queues of many thousand messages.

moto counts a queue's messages on every SendMessage (it builds all queue
attributes) and on every ReceiveMessage, reading the clock through a
datetime-based helper once per message per count: a queue of n messages costs
O(n) slow clock reads per call. Reading `time.time()` instead keeps the same
behaviour at a fraction of the cost. Worse, it builds every queue attribute
(three O(n) counts) for each message it receives (to read the retention
period) and each one it sends (to read ContentBasedDeduplication): a receive
of 10 from a queue of 21,000 took 200 ms, 15 of them a second at most,
where SQS answers in the same time at any depth. Here the attributes are a
mapping that computes only what is read.

moto's server answers each request on its own thread, and its SQS backend
is not thread-safe: DeleteMessage rebuilds a queue's message list from a copy
(a message sent meanwhile is lost) and two ReceiveMessage calls at once can
hand out one message twice. Here every backend call holds one lock (a long
poll waits outside it, asking again every 50 ms), and DeleteMessage finds
its message by receipt handle instead of scanning the queue twice.

Run as `python -m scripts.local.moto_server -p PORT`.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from scripts.local.services import MotoServer

__all__ = ["QuickMotoServer", "patch_moto_clock", "serialize_moto_sqs"]

_POLL_AGAIN = 0.05  # seconds between the short polls of a long poll
_MAX_VISIBILITY_MS = 43_200_000  # SQS's 12 hours, as moto checks it


def patch_moto_clock() -> None:
    import moto.sqs.models as sqs_models

    slow = sqs_models.unix_time_millis  # type: ignore[attr-defined]

    def unix_time_millis(dt: datetime | None = None) -> float:
        return time.time() * 1000.0 if dt is None else float(slow(dt))

    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]

    sqs_models.Queue.messages = property(_VisibleMessages)  # type: ignore[method-assign,assignment]
    sqs_models.Queue.attributes = property(_QueueAttributes)  # type: ignore[method-assign,assignment]

    def retained(backend: Any, queue_name: str, message: Any) -> bool:
        # moto's own, reading the one attribute it needs
        retention = int(backend.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    backend = sqs_models.SQSBackend
    backend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign,assignment]


class _VisibleMessages:
    """moto's `Queue.messages` (visible and not delayed) as a view, the clock read once.

    A receive iterates it and stops at its count, and starts past the queue's head of
    messages known to be invisible (`_Skip`): with thousands in flight or set aside at
    the head, moto scanned them all on every receive, where SQS answers as fast at any
    depth."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self._now = time.time() * 1000.0

    def __iter__(self) -> Iterator[Any]:
        now = self._now
        skip = _Skip.of(self._queue, now)
        messages = self._queue._messages
        head = True  # every message before this one is invisible
        for index in range(skip.count, len(messages)):
            message = messages[index]
            if _gone(message):
                if head:
                    skip.count = index + 1
                continue
            if message.visible_at < now and not now < message.delayed_until:
                yield message  # the receive marks it received (invisible) or passes it
                if message.visible_at < now:
                    head = False
            if head:
                skip.count = index + 1
                skip.until = min(skip.until, max(message.visible_at, message.delayed_until))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Skip:
    """A queue's head of invisible messages: the first `count` stay invisible until
    `until` (ms) at the earliest, unless a visibility change brings one forward."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages  # the list it indexes (a purge makes a new one)
        self.count = 0
        self.until = math.inf

    @classmethod
    def of(cls, queue: Any, now: float) -> _Skip:
        skip: _Skip | None = getattr(queue, "lanes_skip", None)
        if skip is None or skip.messages is not queue._messages or not now < skip.until:
            skip = queue.lanes_skip = cls(queue._messages)
        return skip

    @classmethod
    def changed(cls, queue: Any, visible_at: float) -> None:
        skip: _Skip | None = getattr(queue, "lanes_skip", None)
        if skip is not None:
            skip.until = min(skip.until, visible_at)


class _QueueAttributes(Mapping[str, Any]):
    """moto's `Queue.attributes` (the same names and values), each computed when read."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        if queue.policy:
            names.append("Policy")
        if queue.redrive_policy:
            names.append("RedrivePolicy")
        self._names = dict.fromkeys(names)

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name == "Policy":
            return self._queue.policy
        if name == "RedrivePolicy":
            return json.dumps(self._queue.redrive_policy)
        from moto.core.utils import camelcase_to_underscores

        value = getattr(self._queue, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def serialize_moto_sqs() -> None:
    """One lock around every SQS backend call; deletes by a receipt-handle index."""
    import moto.sqs.models as sqs_models

    _index_receipts(sqs_models)  # first: its methods are locked below too
    lock = threading.RLock()
    backend = sqs_models.SQSBackend
    for name, method in list(vars(backend).items()):
        if inspect.isfunction(method) and not name.startswith("_") and name != "receive_message":
            setattr(backend, name, _locked(lock, method))
    receive = backend.receive_message

    def receive_message(  # type: ignore[no-untyped-def]
        self, queue_name, count, wait_seconds_timeout, visibility_timeout, *args, **kwargs
    ):
        end = time.monotonic() + wait_seconds_timeout
        while True:
            with lock:
                got = receive(self, queue_name, count, 0, visibility_timeout, *args, **kwargs)
            if got or time.monotonic() >= end:
                return got
            time.sleep(_POLL_AGAIN)

    backend.receive_message = receive_message  # type: ignore[method-assign]


def _locked(lock: threading.RLock, method: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return call


def _index_receipts(sqs_models: Any) -> None:
    """moto's DeleteMessage scans every message of the queue twice per receipt handle and
    rebuilds its list, its ChangeMessageVisibility scans up to the message, and each receive
    builds the groups of every message in flight (used by FIFO queues only). Here a
    receipt handle finds its message in a dict, a message knows its queue, and a delete
    marks the message gone: the list drops gone messages once they are a quarter of it."""
    holder: dict[str, Any] = {}  # receipt handle -> its message (the handles are random)
    mark_received = sqs_models.Message.mark_received
    add_message = sqs_models.Queue.add_message

    def marked(message: Any, *args: Any, **kwargs: Any) -> None:
        mark_received(message, *args, **kwargs)
        holder[message.receipt_handle] = message

    def added(queue: Any, message: Any) -> None:
        add_message(queue, message)
        if queue._messages and queue._messages[-1] is message:  # not a FIFO duplicate
            # its queue's name (a receive deep-copies the message): a dead-letter move adds
            # it to its new queue
            message.lanes_queue = queue.name

    def held(queue: Any, receipt_handle: str) -> Any:
        message = holder.get(receipt_handle)
        if message is None or getattr(message, "lanes_queue", None) != queue.name or _gone(message):
            raise sqs_models.ReceiptHandleIsInvalid()
        return message

    def delete_message(queue: Any, receipt_handle: str) -> None:
        if receipt_handle in queue.deleted_messages:
            return
        message = held(queue, receipt_handle)
        message.lanes_gone = True
        queue.pending_messages.discard(message)
        queue.deleted_messages.update(message.all_receipt_handles)
        for handle in message.all_receipt_handles:
            holder.pop(handle, None)
        gone = getattr(queue, "lanes_gone", 0) + 1
        if gone * 4 > len(queue._messages):
            queue._messages[:] = [m for m in queue._messages if not _gone(m)]
            queue.lanes_skip = None  # its indices moved
            gone = 0
        queue.lanes_gone = gone

    def change_message_visibility(
        backend: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
    ) -> None:
        # moto's own, finding the message by its handle instead of scanning the queue
        queue = backend.get_queue(queue_name)
        message = held(queue, receipt_handle)
        given = sqs_models.unix_time_millis() + int(visibility_timeout) * 1000
        if given - message.sent_timestamp > _MAX_VISIBILITY_MS:
            raise sqs_models.InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. "
                "Reason: Total VisibilityTimeout for the message is beyond the limit "
                "[43200 seconds]"
            )
        message.change_visibility(visibility_timeout)
        _Skip.changed(queue, message.visible_at)
        if message.visible and message in queue.pending_messages:
            queue.pending_messages.remove(message)

    def pending_message_groups(queue: Any) -> set[str]:
        # only a FIFO queue uses them; moto built them from every message in flight per receive
        return groups(queue) if queue.fifo_queue else set()

    def not_visible(queue: Any) -> int:
        return sum(1 for m in queue._messages if not m.visible and not _gone(m))

    def delayed(queue: Any) -> int:
        return sum(1 for m in queue._messages if m.delayed and not _gone(m))

    groups = sqs_models.Queue.pending_message_groups.fget
    sqs_models.Message.mark_received = marked
    sqs_models.Queue.add_message = added
    sqs_models.Queue.delete_message = delete_message
    sqs_models.Queue.pending_message_groups = property(pending_message_groups)
    sqs_models.Queue.approximate_number_of_messages_not_visible = property(not_visible)
    sqs_models.Queue.approximate_number_of_messages_delayed = property(delayed)
    sqs_models.SQSBackend.change_message_visibility = change_message_visibility


def _gone(message: Any) -> bool:
    """Deleted, and not yet dropped from its queue's list."""
    return bool(getattr(message, "lanes_gone", False))


class QuickMotoServer(MotoServer):
    """`scripts.local.services.MotoServer` running this module's patched server."""

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "scripts.local.moto_server",
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]


if __name__ == "__main__":
    patch_moto_clock()
    serialize_moto_sqs()
    from moto.server import main

    main()
