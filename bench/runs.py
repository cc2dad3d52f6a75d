"""Local runs through the daemon: `reconciler run --once` on a generated repository served by
`git daemon`, against baselines measured in the same run.

- `BENCH_RUNS` (1,000) Tasks running `true`, `--max-parallel 4`, against a Python process
  pool of 4 workers running as many `true`;
- `BENCH_SLEEPS` (200) Tasks running `sleep 1`, `--max-parallel 8`, against the ideal
  (ceil(N / 8) seconds).

The executor alone (the same runs submitted at once to a `LocalExecutor`) shows its own
share. Each daemon row gives the time from the daemon's start to the last run's end (what
the runs cost) and to the daemon's exit (that, plus the status commits that record the last
runs and everything around them), both as ratios.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from loguru import logger

from reconciler.executors.local.executor import LocalExecutor
from reconciler.types import RunState
from tests.executors.conftest import request_for, task_entry
from tests.support.gitservers import GitDaemon, git_env, make_bare_remote

RUNS = int(os.environ.get("BENCH_RUNS", "1000"))
SLEEPS = int(os.environ.get("BENCH_SLEEPS", "200"))


def _task(name: str, command: list[str]) -> str:
    return json.dumps({"apiVersion": "reconciler.io/v1alpha1", "kind": "Task",
                       "metadata": {"name": name}, "spec": {"command": command}}) + "\n"


def _true(_: int) -> None:
    subprocess.run(["true"], check=True)


def _pool_seconds(runs: int, workers: int) -> float:
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_true, range(workers)))  # the workers are up before the clock starts
        started = time.perf_counter()
        list(pool.map(_true, range(runs), chunksize=1))
        return time.perf_counter() - started


def _executor_alone(root: Path, count: int, parallel: int) -> float:
    """Seconds for `count` runs of `true` submitted at once to a `LocalExecutor`, waiting on
    its notices: the executor's own cost, without the daemon's cycles and status commits."""
    logger.disable("reconciler")
    changed = threading.Event()
    with LocalExecutor(state_dir=root / "state-alone", max_parallel=parallel) as executor:
        executor.on_change(changed.set)
        requests = [request_for(task_entry(f"alone-{i:05}", ["true"])) for i in range(count)]
        started = time.perf_counter()
        for request in requests:
            executor.submit(request)
        executor.flush()
        while True:
            changed.clear()
            reports = executor.poll()
            if all(r.state.finished for r in reports):
                seconds = time.perf_counter() - started
                break
            changed.wait(1.0)
    assert all(r.state is RunState.SUCCEEDED for r in reports), "a run failed"
    return seconds


def _through_the_daemon(root: Path, name: str, count: int, command: list[str],
                        parallel: int) -> tuple[float, float, float, int]:
    """Seconds from the first run's start to the last run's end, from the daemon's start to
    the last run's end and to its exit; how many runs succeeded."""
    files = {f"tasks/{name}-{i:05}.yaml": _task(f"{name}-{i:05}", command)
             for i in range(count)}
    make_bare_remote(root / "served" / f"{name}.git", files)
    state = root / f"state-{name}"
    with GitDaemon(root / "served") as daemon:
        began = time.time()
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "run", "--once", "--repo",
             daemon.url(f"{name}.git"), "--state-dir", str(state), "--max-parallel",
             str(parallel), "--log-level", "WARNING"],
            env=git_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            check=False)
        to_exit = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"reconciler run --once exited {done.returncode}: {done.stderr}")
    db = sqlite3.connect(f"{(state / 'journal.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        first, last, succeeded = db.execute(
            "SELECT MIN(started_at), MAX(finished_at), SUM(state = 'Succeeded') FROM runs"
        ).fetchone()
    finally:
        db.close()
    last_ended = datetime.fromisoformat(last).timestamp()
    span = last_ended - datetime.fromisoformat(first).timestamp()
    return span, last_ended - began, to_exit, succeeded


def _rows(span: float, to_last: float, to_exit: float, baseline: float) -> None:
    for what, seconds in (("first run started to last run ended", span),
                          ("daemon start to last run ended", to_last),
                          ("daemon start to exit", to_exit)):
        print(f"  {what:<38}{seconds:8.2f} s  {seconds / baseline:6.2f}x")


def main() -> None:
    """Each row with its count above 0 (BENCH_RUNS=0 or BENCH_SLEEPS=0 leaves one out)."""
    with TemporaryDirectory(prefix="bench-runs-") as tmp:
        root = Path(tmp)
        if RUNS:
            pool = _pool_seconds(RUNS, 4)
            alone = _executor_alone(root, RUNS, 4)
            *true_times, true_ok = _through_the_daemon(root, "true", RUNS, ["true"], 4)
            print(f"{RUNS} x true, --max-parallel 4 ({true_ok} succeeded)")
            print(f"  {'baseline: process pool, 4 workers':<38}{pool:8.2f} s")
            print(f"  {'LocalExecutor alone, no daemon':<38}{alone:8.2f} s  {alone / pool:6.2f}x")
            _rows(*true_times, pool)
        if SLEEPS:
            ideal = math.ceil(SLEEPS / 8) * 1.0
            *sleep_times, sleep_ok = _through_the_daemon(root, "sleep", SLEEPS, ["sleep", "1"], 8)
            print(f"{SLEEPS} x sleep 1, --max-parallel 8 ({sleep_ok} succeeded)")
            print(f"  {'baseline: ideal':<38}{ideal:8.2f} s")
            _rows(*sleep_times, ideal)

if __name__ == "__main__":
    main()
