"""Memory per entry: the daemon's peak and resident memory after its first start and after a
restart, at 1,000, 10,000 and 30,000 entries, less what the bare imports take (`python -m
bench memory`; BENCH_SIZES to choose). The goals of issue 12: a peak of at most 150 MiB at
10,000 entries, and at most 4 KiB per entry.

Each figure is a fresh process (see `bench.restart`: the daemon as `reconciler run` builds it,
reading generated suspended tasks from `git daemon` on 127.0.0.1), through two cycles.
Figures are printed, not asserted.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

from bench import sizes
from bench.noop import repository
from bench.restart import spawn
from tests.support.gitservers import GitDaemon, make_bare_remote


def measure(entries: int) -> None:
    with TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        make_bare_remote(root / "served" / "big.git", repository(entries))
        with GitDaemon(root / "served") as server:
            url = server.url("big.git")
            base = spawn("imports", url, root / "empty")["rss_imports"]
            for label, mode in (("first start", "first"), ("restart", "restart")):
                got = spawn(mode, url, root / "state")
                peak, now = got["rss_peak"], got["rss_now"]
                print(f"{entries:>6} entries, {label}: peak RSS {peak:.0f} MiB, "
                      f"{(peak - base) * 1024 / entries:.2f} KiB per entry beyond the imports "
                      f"({base:.0f} MiB); resident after the cycles {now:.0f} MiB, "
                      f"{(now - base) * 1024 / entries:.2f} KiB per entry", flush=True)


def main() -> None:
    for entries in sizes("1000,10000,30000"):
        measure(entries)


if __name__ == "__main__":
    main()
