"""`python -m worker` is `lanes worker`: the same parser, settings, warnings and exit codes.

The one module of `worker` that imports `scripts`: an entry point, like the console script.
"""

from __future__ import annotations

import sys

from scripts.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
