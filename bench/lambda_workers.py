"""`lanes worker`'s Lambda twin for the fault suite: the Lambda handler behind the local
SQS event-source emulator (`scripts.local.lambda_emulator`), one event source per lane of
market `acme`, until SIGTERM. Settings come from the `LANES_*` environment, as the
handler reads them; `--timeout` is the function's timeout, so that a fault can make
invocations run out of time.

    python -m bench.lambda_workers --timeout 3 --output 'worker-{pid}.log'
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from lanes import Lane, load_settings
from scripts.local.lambda_emulator import EventSource, LambdaEmulator
from worker.queues import QueueName
from worker.settings import WorkerSettings
from worker.sqs import SqsClient

__all__ = ["main"]

_MARKET = "acme"


async def _run(function_timeout: float, concurrency: int, output: str) -> None:
    settings = load_settings(WorkerSettings)
    sources = [
        EventSource(
            QueueName(settings.queue_prefix, _MARKET, lane).queue,
            batch_size=10,
            max_concurrency=concurrency,
        )
        for lane in Lane
    ]
    async with (
        SqsClient(endpoint_url=settings.sqs_endpoint_url, region="us-east-1") as sqs,
        LambdaEmulator(
            sqs,
            sources,
            environment=dict(os.environ),
            timeout_seconds=function_timeout,
            wait_seconds=settings.wait_seconds,
            output=output,
        ) as emulator,
    ):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, emulator.stop)
        await emulator.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0, help="the function's timeout, s")
    parser.add_argument("--concurrency", type=int, default=1, help="invocations per lane")
    parser.add_argument("--output", required=True, help="log file of each process ({pid})")
    args = parser.parse_args()
    asyncio.run(_run(args.timeout, args.concurrency, args.output))


if __name__ == "__main__":
    main()
