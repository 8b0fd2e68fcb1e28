"""The fault and load suite: several `lanes worker` processes, one fault injected mid-run.

Each run starts N worker processes through the CLI (`lanes worker`) against a
real redis-server, moto's SQS server and a strict counting market
(`bench.strict_market` in its own process), sends a mix of side-effect jobs
(high: POST with an id), collections (medium) and low work (half product syncs
that POST, half backfill reads), injects a
fault once a quarter of the jobs is done, heals it, waits for the lanes to
drain and counts what lanes promises (docs/DESIGN.md rules 1, 6, 8, 11, 12):

| column    | what                                                          | promised |
|-----------|---------------------------------------------------------------|----------|
| over      | arrivals over the market's limit in a trailing window          | 0        |
| lost      | jobs neither done, nor dead-lettered, nor back in their queue  | 0        |
| twice     | side effects the market performed more than once for an id     | 0        |
| no-reason | dead letters without a `lanes.reason` attribute                | 0        |
| leaks     | log lines or DLQ attributes holding a credential of the run    | 0        |
| recovery  | seconds from the heal to the first job done after it           | small    |

Workers reach Redis and SQS through `Gate`s (TCP proxies this process owns),
so the suite can cut or slow either without touching the servers' state.

    python -m bench.faults                      # every fault, 2 and 4 workers
    python -m bench.faults --workers 2 --fault sigkill --fault redis-down

The package: `market` (the counting market process), `gate` (the TCP proxies), `rig`
(servers, gates and one run's workers), `definitions` (the faults), `runner` (one run and
its counts), `report` (a run's row and the table), `__main__` (the command).
"""

from __future__ import annotations

from bench.faults.definitions import FAULTS, LONG_RUNNING, Fault, market_fault
from bench.faults.gate import Gate
from bench.faults.market import fault_market_app
from bench.faults.report import RunReport
from bench.faults.rig import Rig, Run, drain_queue, running_rig
from bench.faults.runner import run_fault

__all__ = [
    "FAULTS",
    "LONG_RUNNING",
    "Fault",
    "Gate",
    "Rig",
    "Run",
    "RunReport",
    "drain_queue",
    "fault_market_app",
    "market_fault",
    "run_fault",
    "running_rig",
]
