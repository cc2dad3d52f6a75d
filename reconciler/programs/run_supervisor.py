"""The supervisor host of a state dir: `python -I -c BOOTSTRAP ROOT LISTENER_FD`.

Started by the local executor, detached, when none is listening in its state dir
(`executors/local/supervision.py`); it forks the supervisor of every run
(`executors/local/host.py`, over `runner.py`). Like the runner, it loads the standard library
only.
"""

from __future__ import annotations

import socket
import sys

from reconciler.executors.local.host import serve


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: run_supervisor LISTENER_FD (started by the local executor)",
              file=sys.stderr)
        return 2
    serve(socket.socket(fileno=int(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
