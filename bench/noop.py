"""A daemon cycle when nothing changed (head unchanged, nothing due), and after a one-file
change, against the poll alone, at 1,000 and 10,000 entries (`python -m bench noop`; set
BENCH_SIZES=1000,10000,30000 for more).

The whole daemon as `reconciler run` builds it (local executor, policy, status branch) reads a
generated repository of suspended tasks served by `git daemon` on 127.0.0.1. The baseline is
`GitSource.head()` (pygit2 `Remote.list_heads()`), measured in the same run: the part of a
no-op cycle that cannot be skipped. Figures are printed, not asserted.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from loguru import logger

from bench import sizes
from bench.cycle import FOLDERS, task_file
from reconciler.commands.run import build_daemon
from reconciler.metrics import Metrics
from reconciler.settings import Settings
from tests.support.gitservers import GitDaemon, GitUser, make_bare_remote

REPEAT = 7


def suspended(folder: int, index: int, day: str = "monday") -> str:
    return task_file(folder, index, day).replace("suspend: false", "suspend: true")


def repository(entries: int) -> dict[str, str]:
    per_folder = max(entries // FOLDERS, 1)
    return {f"team-{i // per_folder:03d}/task-{i:05d}.yaml": suspended(i // per_folder, i)
            for i in range(entries)}


def median_ms(action: Callable[[], object], repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cpu_ms(action: Callable[[], object], repeat: int = REPEAT) -> float:
    started = time.process_time()
    for _ in range(repeat):
        action()
    return (time.process_time() - started) * 1000 / repeat


def measure(entries: int) -> None:
    with TemporaryDirectory(prefix="bench-noop-") as tmp:
        root = Path(tmp)
        make_bare_remote(root / "served" / "big.git", repository(entries))
        with GitDaemon(root / "served") as server:
            url = server.url("big.git")
            user = GitUser(url, root / "user").clone()
            settings = Settings(repo=url, state_dir=root / "state", listen=None,
                                interval_seconds=1)
            daemon = build_daemon(settings, Metrics())
            try:
                started = time.perf_counter()
                daemon.cycle()
                first = time.perf_counter() - started
                daemon.cycle()  # the cycle after the first: the plan reaches its fixed point
                poll = median_ms(daemon.source.head)
                noop = median_ms(daemon.cycle)
                noop_cpu = cpu_ms(daemon.cycle)
                changes, path = [], "team-000/task-00000.yaml"
                for n in range(3):
                    user.commit({path: suspended(0, 0, f"day-{n}")}, f"Change {n}")
                    user.push()
                    changes.append(median_ms(daemon.cycle, repeat=1))
                    daemon.cycle()
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            finally:
                daemon.executor.close()
        change = statistics.median(changes)
        print(f"{entries:>6} entries: first cycle {first:.1f} s; "
              f"poll (list_heads) {poll:.1f} ms; no-op cycle {noop:.1f} ms "
              f"({noop / poll:.1f}x the poll, CPU {noop_cpu:.1f} ms); "
              f"one-file change {change:.0f} ms, with its status commit "
              f"({change / poll:.0f}x the poll); peak RSS so far {rss:.0f} MiB", flush=True)


def main() -> None:
    logger.disable("reconciler")
    for entries in sizes("1000,10000"):
        measure(entries)


if __name__ == "__main__":
    main()
