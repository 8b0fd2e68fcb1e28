"""`python -m worker`: the daemon, as `lanes worker` runs it (same settings, same exit codes)."""

from __future__ import annotations

import sys

from worker.daemon import main

if __name__ == "__main__":
    sys.exit(main())
