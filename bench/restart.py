"""Process start to first plan: a first-ever start (every file parsed) and a restart with the
state dir of a daemon that ran before, against same-run baselines (`python -m bench restart`;
BENCH_SIZES=1000,10000,30000 for more sizes).

Every figure is a fresh process, timed from before it is spawned, reading a generated
repository of suspended tasks served by `git daemon` on 127.0.0.1:
- imports: the process imports what the daemon imports, and exits (the floor of any start);
- C-loader floor: the imports, a fetch into an empty state dir, every blob read and parsed
  with PyYAML's CSafeLoader (the floor of a first load);
- first start: the daemon as `reconciler run` builds it, from an empty state dir, through
  its first plan (then it writes status, untimed, so that there is something to restart from);
- restart: the same, from the state dir and status branch the first start left (whose
  status records it parses: the first start read none), and again (it reads them from the
  state dir too).
Each process runs one more cycle after it is timed: the one that saves what a restart reads.
Figures are printed, not asserted.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench import sizes
from bench.noop import repository
from tests.support.gitservers import GitDaemon, make_bare_remote

REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))


def _child(mode: str, url: str, state: str) -> None:
    """One timed process (run as `python -m bench.restart MODE URL STATE`): prints JSON."""
    from loguru import logger

    from reconciler.commands.run import build_daemon
    from reconciler.daemon import cycle as cycles
    from reconciler.declarations import loader as _loader  # noqa: F401 what build_daemon imports
    from reconciler.metrics import Metrics
    from reconciler.policy import apply as _apply  # noqa: F401
    from reconciler.settings import Settings
    from reconciler.source import gitsource as _gitsource  # noqa: F401

    imported = time.time()
    out: dict[str, float] = {"imports": imported, "rss_imports": _peak_mib()}
    logger.disable("reconciler")
    if mode == "floor":
        import yaml

        from reconciler.source.gitsource import GitSource

        source = GitSource(url, Path(state))
        files = source.files(source.fetch())
        for item in files.walk("."):
            list(yaml.load_all(files.read(item.path), Loader=yaml.CSafeLoader))
        out["loaded"] = time.time()
    elif mode in ("first", "restart"):
        settings = Settings(repo=url, state_dir=Path(state), listen=None, interval_seconds=1)
        daemon = build_daemon(settings, Metrics())
        def planned(cycle: cycles.Cycle) -> None:
            if cycle.plan is None:
                raise SystemExit("the first cycle did not plan")
            out.setdefault("planned", time.time())

        daemon.stages = (*daemon.stages, planned)
        try:
            first = daemon.cycle()
            if first.errors:
                raise SystemExit(f"the first cycle failed: {first.errors}")
            daemon.cycle()  # what the cycles after the first save for the next restart
            out["entries"] = len(daemon.desired.entries)
            out["rss_peak"] = _peak_mib()
            gc.collect()
            out["rss_now"] = _resident_mib()
        finally:
            daemon.executor.close()
    print(json.dumps(out))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def spawn(mode: str, url: str, state: Path) -> dict[str, float]:
    """Run `_child` in a fresh process; its times in seconds since it was spawned."""
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "bench.restart", mode, url, str(state)],
        check=True, capture_output=True, text=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: (v - started if k in ("imports", "loaded", "planned") else v)
            for k, v in figures.items()}


def measure(entries: int) -> None:
    with TemporaryDirectory(prefix="bench-restart-") as tmp:
        root = Path(tmp)
        make_bare_remote(root / "served" / "big.git", repository(entries))
        with GitDaemon(root / "served") as server:
            url = server.url("big.git")
            imports, floor, first, restart, again = [], [], [], [], []
            for n in range(REPEAT):
                imports.append(spawn("imports", url, root / f"empty-{n}")["imports"])
                floor.append(spawn("floor", url, root / f"floor-{n}")["loaded"])
                # A fresh status branch for each first start: a remote of its own.
                name = f"big-{n}.git"
                if n:
                    make_bare_remote(root / "served" / name, repository(entries))
                else:
                    name = "big.git"
                state = root / f"state-{n}"
                first.append(spawn("first", server.url(name), state)["planned"])
                restart.append(spawn("restart", server.url(name), state)["planned"])
                again.append(spawn("restart", server.url(name), state)["planned"])
    base, c_floor = statistics.median(imports), statistics.median(floor)
    cold, warm, hot = (statistics.median(first), statistics.median(restart),
                       statistics.median(again))
    print(f"{entries:>6} entries: imports {base:.2f} s; C-loader floor {c_floor:.2f} s; "
          f"first start to first plan {cold:.2f} s ({cold / c_floor:.2f}x the floor); "
          f"restart to first plan {warm:.2f} s ({warm - base:+.2f} s beyond the imports), "
          f"and again {hot:.2f} s ({hot - base:+.2f} s)", flush=True)


def main() -> None:
    for entries in sizes("10000"):
        measure(entries)


if __name__ == "__main__":
    if len(sys.argv) == 4:
        _child(*sys.argv[1:])
    else:
        main()
