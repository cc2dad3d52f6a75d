"""Every row of issue 12's table as a ratio against its same-run baseline, at each of
BENCH_SIZES (1,000, 10,000 and 30,000 entries), then the two rows of runs at fixed sizes
(BENCH_RUNS, BENCH_SLEEPS), and the cost of each cycle stage (`python -m bench table`).

Per size, one generated repository of suspended tasks is served by `git daemon` on
127.0.0.1 and read by:
- fresh processes for the first-ever load, the restart and the peak RSS: `bench.restart`'s
  `spawn` when that module is there; else the first load and the restart are timed in this
  process from the daemon's construction, plus the imports timed in a fresh process, and the
  RSS is not measured;
- the daemon as `reconciler run` builds it, in this process, every stage wrapped with a timer
  (the daemon is not changed): the no-op cycle and its CPU against the poll, a one-file change
  up to the status push against fetch + tree compare + parse of that one file;
- `bench.rewrite` for all records rewritten.
The runs rows time `reconciler run --once` in a subprocess, start to exit, against a Python
process pool of the same width running as many `true`, or the ideal (`sleep 1`); `bench.runs`
breaks them down further. BENCH_RUNS=0 leaves them out. Figures are printed, not asserted.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from loguru import logger

from bench import rewrite, sizes
from bench.noop import cpu_ms, median_ms, repository, suspended
from reconciler.commands.run import build_daemon
from reconciler.daemon.core import Daemon
from reconciler.daemon.cycle import Cycle, Stage
from reconciler.declarations.loader import DeclarationLoader
from reconciler.metrics import Metrics
from reconciler.settings import Settings
from reconciler.source.gitsource import GitSource
from tests.support.gitservers import GitDaemon, GitUser, git_env, make_bare_remote

CHANGES = 3
IMPORTS = ("import reconciler.commands.run, reconciler.declarations.loader, "
           "reconciler.policy.apply, reconciler.source.gitsource")


@dataclass(frozen=True)
class Row:
    what: str
    baseline: float | None
    now: float
    unit: str
    goal: str

    def line(self) -> str:
        base = "—" if self.baseline is None else f"{self.baseline:.1f} {self.unit}"
        ratio = "" if not self.baseline else f"{self.now / self.baseline:.2f}x"
        return f"| {self.what} | {base} | {self.now:.1f} {self.unit} | {ratio} | {self.goal} |"


class StageTimes:
    """Every stage of a daemon's cycle timed, by wrapping the stage tuples it runs."""

    def __init__(self, daemon: Daemon) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.opening = [s.__name__.lstrip("_") for s in daemon.stages]
        daemon.stages = tuple(self._timed(s) for s in daemon.stages)
        daemon.closing = tuple(self._timed(s) for s in daemon.closing)

    def _timed(self, stage: Stage) -> Stage:
        def timed(cycle: Cycle) -> None:
            started = time.perf_counter()
            try:
                stage(cycle)
            finally:
                self.seconds[stage.__name__.lstrip("_")].append(time.perf_counter() - started)

        return timed

    def before_status(self) -> float:
        """Seconds of the last cycle up to its status push."""
        return sum(self.seconds[name][-1] for name in self.opening if self.seconds[name])

    def clear(self) -> None:
        self.seconds.clear()

    def medians_ms(self) -> str:
        return ", ".join(f"{name} {statistics.median(s) * 1000:.2f}"
                         for name, s in self.seconds.items())


def _imports_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True)
    return time.perf_counter() - started


def _spawned(url: str, root: Path) -> dict[str, float] | None:
    """Imports, C-loader floor, first start, restart and RSS from `bench.restart`, if there."""
    try:
        restart: Any = importlib.import_module("bench.restart")
    except ImportError:
        return None
    floor = restart.spawn("floor", url, root / "floor")["loaded"]
    first = restart.spawn("first", url, root / "spawned")
    again = restart.spawn("restart", url, root / "spawned")
    imports = restart.spawn("imports", url, root / "empty")
    return {"imports": imports["imports"], "floor": floor, "first": first["planned"],
            "restart": again["planned"], "rss": first["rss_peak"],
            "rss_imports": imports["rss_imports"]}


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def size_rows(entries: int) -> tuple[list[Row], str, str]:
    """The rows measured at `entries`, and the stage costs of a no-op and a 1-file cycle."""
    logger.disable("reconciler")
    with TemporaryDirectory(prefix="bench-table-") as tmp:
        root = Path(tmp)
        make_bare_remote(root / "served" / "big.git", repository(entries))
        with GitDaemon(root / "served") as server:
            url = server.url("big.git")
            spawned = _spawned(url, root)
            settings = Settings(repo=url, state_dir=root / "state", listen=None,
                                interval_seconds=1)
            daemon = build_daemon(settings, Metrics())
            times = StageTimes(daemon)
            try:
                daemon.cycle()
                loaded = sum(times.seconds["restore"] + times.seconds["sync_source"])
                daemon.cycle()
                rows, noop_stages = _cycles(daemon, times, url, root)
                change_stages = times.medians_ms()
            finally:
                daemon.executor.close()
            restart = _restart_seconds(settings)
            rewritten = rewrite.measure(entries, url=url)
    rows.append(Row("all records rewritten", rewritten.baseline, rewritten.publish, "s",
                    "≤ 1.5x"))
    rows.extend(_starts(spawned, loaded, restart))
    return rows, noop_stages, change_stages


def _restart_seconds(settings: Settings) -> float:
    """From building the daemon again on the same state dir to the end of its first plan."""
    started = time.perf_counter()
    daemon = build_daemon(settings, Metrics())
    built = time.perf_counter() - started
    times = StageTimes(daemon)
    try:
        daemon.cycle()
    finally:
        daemon.executor.close()
    planning = times.opening[:times.opening.index("plan") + 1]
    return built + sum(times.seconds[name][0] for name in planning)


def _floor_ms(source: GitSource, loader: DeclarationLoader) -> float:
    """Poll, fetch, compare the trees and parse what changed: what a change cannot skip."""
    started = time.perf_counter()
    if source.head() is not None:
        loader.load(source.files(source.fetch()))
    return (time.perf_counter() - started) * 1000


def _cycles(daemon: Daemon, times: StageTimes, url: str,
            root: Path) -> tuple[list[Row], str]:
    """No-op cycle, idle CPU and one-file change rows; the no-op cycle's stage costs."""
    times.clear()
    poll = median_ms(daemon.source.head)
    noop = median_ms(daemon.cycle)
    noop_stages = times.medians_ms()
    idle = cpu_ms(daemon.cycle) / 10  # one cycle a second, in % of a core
    poll_cpu = cpu_ms(daemon.source.head) / 10
    user = GitUser(url, root / "user").clone()
    floor_source = GitSource(url, root / "floor-state")
    loader = DeclarationLoader()
    loader.load(floor_source.files(floor_source.fetch()))
    floors, changes = [], []
    times.clear()
    for n in range(CHANGES):
        user.commit({"team-000/task-00000.yaml": suspended(0, 0, f"day-{n}")}, f"Change {n}")
        user.push()
        floors.append(_floor_ms(floor_source, loader))
        daemon.cycle()
        changes.append(times.before_status() * 1000)
    return [
        Row("no-op cycle (head unchanged)", poll, noop, "ms", "≤ 2x list_heads"),
        Row("idle CPU, --interval 1s (% of a core)", poll_cpu, idle, "%", "≤ 1 %"),
        Row("1-file change, cycle before the status push", statistics.median(floors),
            statistics.median(changes), "ms", "≤ 3x"),
    ], noop_stages


def _starts(spawned: dict[str, float] | None, loaded: float, restart: float) -> list[Row]:
    if spawned is None:  # in this process: from the daemon's construction, imports apart
        imports = _imports_seconds()
        return [Row("restart to first plan (in process + imports)", imports, imports + restart,
                    "s", "≤ imports + 0.5 s"),
                Row("first-ever load (in process, no C-loader floor)", None, loaded, "s",
                    "≤ 1.2x the floor")]
    return [Row("restart to first plan", spawned["imports"], spawned["restart"], "s",
                "≤ imports + 0.5 s"),
            Row("first-ever load to first plan", spawned["floor"], spawned["first"], "s",
                "≤ 1.2x the floor"),
            Row("peak RSS (MiB)", None, spawned["rss"], "MiB", "≤ 150 MiB at 10k")]


def _true(_: int) -> None:
    subprocess.run(["true"], check=True)


def _pool_seconds(runs: int, workers: int) -> float:
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_true, range(workers)))
        return _timed(lambda: list(pool.map(_true, range(runs), chunksize=1)))


def _once_seconds(root: Path, name: str, count: int, command: list[str], parallel: int) -> float:
    """`reconciler run --once` over `count` tasks running `command`, start to exit."""
    files = {f"tasks/{name}-{i:05}.yaml": json.dumps({
        "apiVersion": "reconciler.io/v1alpha1", "kind": "Task",
        "metadata": {"name": f"{name}-{i:05}"}, "spec": {"command": command}})
        for i in range(count)}
    make_bare_remote(root / "served" / f"{name}.git", files)
    with GitDaemon(root / "served") as server:
        return _timed(lambda: subprocess.run(
            [sys.executable, "-m", "reconciler", "run", "--once", "--repo",
             server.url(f"{name}.git"), "--state-dir", str(root / f"state-{name}"),
             "--max-parallel", str(parallel), "--log-level", "WARNING"],
            env=git_env(), stdin=subprocess.DEVNULL, capture_output=True, check=True))


def run_rows() -> list[Row]:
    runs = int(os.environ.get("BENCH_RUNS", "1000"))
    sleeps = int(os.environ.get("BENCH_SLEEPS", "200"))
    with TemporaryDirectory(prefix="bench-table-runs-") as tmp:
        root = Path(tmp)
        pool = _pool_seconds(runs, 4)
        trues = _once_seconds(root, "true", runs, ["true"], 4)
        slept = _once_seconds(root, "sleep", sleeps, ["sleep", "1"], 8)
    return [Row(f"{runs} x true, --max-parallel 4 (to exit)", pool, trues, "s",
                "≤ 1.05x + one status commit"),
            Row(f"{sleeps} x sleep 1, --max-parallel 8 (to exit)", math.ceil(sleeps / 8),
                slept, "s", "≤ 1.05x")]


def main() -> None:
    stages = []
    print("| what | baseline | now | ratio | goal |\n|---|---|---|---|---|", flush=True)
    for entries in sizes("1000,10000,30000"):
        rows, noop, change = size_rows(entries)
        for row in rows:
            print(row.line().replace("| ", f"| {entries:,}: ", 1), flush=True)
        stages.append(f"{entries:,} entries, stage ms: no-op cycle: {noop}\n"
                      f"{entries:,} entries, stage ms: 1-file change: {change}")
    if os.environ.get("BENCH_RUNS") != "0":
        for row in run_rows():
            print(row.line(), flush=True)
    print("\n" + "\n".join(stages))


if __name__ == "__main__":
    main()
