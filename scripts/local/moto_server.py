"""moto's SQS server with a cheaper clock, for queues of many thousand messages.

moto counts a queue's messages on every SendMessage (it builds all queue
attributes) and on every ReceiveMessage, reading the clock through a
datetime-based helper once per message per count: a queue of n messages costs
O(n) slow clock reads per call. Reading `time.time()` instead keeps the same
behaviour at a fraction of the cost. Run as `python -m scripts.local.moto_server -p PORT`.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from scripts.local.services import MotoServer

__all__ = ["QuickMotoServer", "patch_moto_clock"]


def patch_moto_clock() -> None:
    import moto.sqs.models as sqs_models

    slow = sqs_models.unix_time_millis  # type: ignore[attr-defined]

    def unix_time_millis(dt: datetime | None = None) -> float:
        return time.time() * 1000.0 if dt is None else float(slow(dt))

    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]


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
    from moto.server import main

    main()
