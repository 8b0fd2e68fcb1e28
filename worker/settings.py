"""The worker's settings (`LANES_*`): SQS, the daemon and the Lambda handler, the
results sink and the side effects' records, beside what every process reads."""

from __future__ import annotations

from pydantic import Field

from lanes.settings import Settings

__all__ = ["WorkerSettings"]


class WorkerSettings(Settings):
    """What `lanes worker` and the Lambda handler read (and the producers: SQS)."""

    sqs_endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    queue_prefix: str = Field(default="lanes", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    concurrency: int = Field(default=32, ge=1, le=1000)
    visibility_timeout: int = Field(default=120, ge=10, le=43_200)
    # At least 1: a zero-second poll of an empty queue returns at once, so an idle
    # worker would spin on receives (and SQS bills each one).
    wait_seconds: int = Field(default=20, ge=1, le=20)
    grace_seconds: float = Field(default=20.0, ge=0, le=3600, allow_inf_nan=False)
    results_url: str = Field(default="file:results.jsonl", pattern=r"^(file:|sqs:|https?://)")
    # Seconds Redis keeps a side effect's record (and a job's attempt count). At most a
    # year: far past SQS's 14-day retention, and well inside what Redis takes as an EX
    # (a huge one is refused at every write, and every side-effect job would wait forever).
    idempotency_ttl: int = Field(default=7 * 24 * 3600, ge=60, le=366 * 24 * 3600)
    # After a side effect's request got no answer, how long the market may still be acting
    # on it: the job's resumed run (which checks what landed) waits that long.
    settle_seconds: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False)
    # Base of the backoff between a low job's attempts across deliveries (doubling, 15 min cap).
    retry_backoff: float = Field(default=60.0, gt=0, le=900)
    # The daemon's /metrics and /healthz port (0: off) and address.
    metrics_port: int = Field(default=0, ge=0, le=65_535)
    metrics_host: str = "127.0.0.1"  # the daemon image sets 0.0.0.0: its probes come from outside
    # Messages a worker holds per lane to start them round robin across sellers
    # (docs/DESIGN.md rule 14); 0 starts them in the order received.
    seller_buffer: int = Field(default=100, ge=0, le=10_000)
