"""moto's SQS server with a cheaper clock and one lock, for queues of many thousand messages.

moto counts a queue's messages on every SendMessage (it builds all queue
attributes) and on every ReceiveMessage, reading the clock through a
datetime-based helper once per message per count: a queue of n messages costs
O(n) slow clock reads per call. Reading `time.time()` instead keeps the same
behaviour at a fraction of the cost.

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
import sys
import threading
import time
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

    def messages(queue: Any) -> list[Any]:
        # moto's own: visible and not delayed, the clock read once per call, not twice per message
        now = time.time() * 1000.0
        return [m for m in queue._messages if m.visible_at < now and not now < m.delayed_until]

    sqs_models.Queue.messages = property(messages)  # type: ignore[method-assign,assignment]


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
    """moto's DeleteMessage scans every message of the queue twice per receipt handle, its
    ChangeMessageVisibility up to the message, and each receive builds the groups of every
    message in flight (used by FIFO queues only)."""
    holder: dict[str, Any] = {}  # receipt handle -> its message (the handles are random)
    mark_received = sqs_models.Message.mark_received

    def marked(message: Any, *args: Any, **kwargs: Any) -> None:
        mark_received(message, *args, **kwargs)
        holder[message.receipt_handle] = message

    def delete_message(queue: Any, receipt_handle: str) -> None:
        if receipt_handle in queue.deleted_messages:
            return
        message = holder.get(receipt_handle)
        if message is None or not any(m is message for m in queue._messages):
            raise sqs_models.ReceiptHandleIsInvalid()
        queue._messages = [m for m in queue._messages if m is not message]
        queue.pending_messages.discard(message)
        queue.deleted_messages.update(message.all_receipt_handles)
        for handle in message.all_receipt_handles:
            holder.pop(handle, None)

    def change_message_visibility(
        backend: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
    ) -> None:
        # moto's own, finding the message by its handle instead of scanning the queue
        queue = backend.get_queue(queue_name)
        message = holder.get(receipt_handle)
        if message is None or not any(m is message for m in queue._messages):
            raise sqs_models.ReceiptHandleIsInvalid
        given = sqs_models.unix_time_millis() + int(visibility_timeout) * 1000
        if given - message.sent_timestamp > _MAX_VISIBILITY_MS:
            raise sqs_models.InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. "
                "Reason: Total VisibilityTimeout for the message is beyond the limit "
                "[43200 seconds]"
            )
        message.change_visibility(visibility_timeout)
        if message.visible and message in queue.pending_messages:
            queue.pending_messages.remove(message)

    def pending_message_groups(queue: Any) -> set[str]:
        # only a FIFO queue uses them; moto built them from every message in flight per receive
        return groups(queue) if queue.fifo_queue else set()

    groups = sqs_models.Queue.pending_message_groups.fget
    sqs_models.Message.mark_received = marked
    sqs_models.Queue.delete_message = delete_message
    sqs_models.Queue.pending_message_groups = property(pending_message_groups)
    sqs_models.SQSBackend.change_message_visibility = change_message_visibility


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
