"""A daemon stand-in for restart tests: `python -m tests.executors.executor_process STATE_DIR
MAX_PARALLEL REQUEST.json...` submits the requests to a local executor and keeps polling, as the
daemon does, until it is killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from reconciler.executors.local.executor import LocalExecutor
from reconciler.runs import RunRequest


def main(argv: list[str]) -> None:
    state_dir, max_parallel, *request_files = argv
    executor = LocalExecutor(
        state_dir=Path(state_dir), max_parallel=int(max_parallel), kill_grace_seconds=0.5
    )
    for path in request_files:
        executor.submit(RunRequest.model_validate_json(Path(path).read_text()))
    print("submitted", flush=True)
    while True:
        executor.poll()
        time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
