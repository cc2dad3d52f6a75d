"""The supervisor of one local run: `python -m reconciler.programs.run_supervisor RUN_DIR`.

Started by the local executor, detached, once per run (`executors/local/supervision.py`); what
it does is `executors/local/runner.py`. Like the runner, it loads the standard library only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from reconciler.executors.local.runner import supervise


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m reconciler.programs.run_supervisor RUN_DIR", file=sys.stderr)
        return 2
    supervise(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
