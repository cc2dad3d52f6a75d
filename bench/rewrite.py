"""Every status record rewritten at once (`python -m bench rewrite`; BENCH_SIZES=1000,10000):
the daemon's status write against a bare pygit2 commit of the same files, on the same remote.

The mirror holds a generated repository of N task files (the objects a full repack would
walk) and a status branch of N records. Each round changes every record (a new run of every
entry) and times, in the same run:
- the baseline: the same files written with `TreeBuilder` into a repository of their own and
  pushed to another branch of the same `git daemon` remote (no status logic at all);
- `GitSource.write_status`: the daemon's commit and push of those files, mirror upkeep included;
- `StatusPublisher.publish`: the whole status stage (render, compare, commit, push).
Figures are printed, not asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import pygit2
from loguru import logger

from bench import sizes
from bench.noop import repository
from reconciler.daemon.publisher import StatusPublisher
from reconciler.records import EntryRecord, RunInfo
from reconciler.redact import Redactor
from reconciler.source.gitsource import GitSource
from reconciler.status import Renderer
from reconciler.types import (
    EntryId,
    Kind,
    Operation,
    Phase,
    Revision,
    RunId,
    RunState,
    SpecHash,
    Trigger,
)
from tests.support.gitservers import GitDaemon, make_bare_remote

ROUNDS = 3


@dataclass(frozen=True)
class Rewrite:
    entries: int
    baseline: float
    """Seconds: TreeBuilder commit of every file + push, median of the rounds."""
    write: float
    """Seconds: `GitSource.write_status` of the same files."""
    publish: float
    """Seconds: `StatusPublisher.publish` of the records those files render."""


def records(entries: int, round_: int) -> dict[EntryId, EntryRecord]:
    """Every entry succeeded in a run of this round: each record differs from the last
    round's in its phase-worthy fields, so every file is rewritten."""
    now = datetime.now(UTC).replace(microsecond=0)
    made = {}
    for i in range(entries):
        name = f"t{i // 100:03d}-{i:05d}"
        entry = EntryId(f"task/{name}")
        run = RunInfo(id=RunId(f"{name}-r{round_}"), operation=Operation.RUN,
                      trigger=Trigger.NEW, spec_hash=SpecHash("0" * 16),
                      revision=Revision("1" * 40), state=RunState.SUCCEEDED, started_at=now,
                      finished_at=now, exit_code=0, log_tail=f"report {i}\n")
        made[entry] = EntryRecord(entry=entry, kind=Kind.TASK, name=name,
                                  spec_hash=run.spec_hash, commit=run.revision,
                                  source=f"team/task-{i:05d}.yaml:1", phase=Phase.SUCCEEDED,
                                  message=f"{run.id} succeeded", last_run=run)
    return made


def baseline_commit(repo: pygit2.Repository, url: str, files: Mapping[str, bytes],
                    round_: int) -> None:
    """The floor: one TreeBuilder per folder, one commit, one push."""
    folders: dict[str, dict[str, bytes]] = {}
    for path, data in files.items():
        folder, _, name = path.rpartition("/")
        folders.setdefault(folder, {})[name] = data
    root: dict[str, pygit2.Oid] = {}
    for folder, names in folders.items():
        builder = repo.TreeBuilder()
        for name, data in names.items():
            builder.insert(name, repo.create_blob(data), pygit2.enums.FileMode.BLOB)
        root[folder] = builder.write()
    status = repo.TreeBuilder()
    for folder, oid in root.items():
        if folder != "status":
            status.insert(folder.removeprefix("status/"), oid, pygit2.enums.FileMode.TREE)
    for name, data in folders.get("status", {}).items():
        status.insert(name, repo.create_blob(data), pygit2.enums.FileMode.BLOB)
    top = repo.TreeBuilder()
    top.insert("status", status.write(), pygit2.enums.FileMode.TREE)
    ref = "refs/heads/bench-baseline"
    parents = [repo.references[ref].target] if ref in repo.references else []
    who = pygit2.Signature("bench", "bench@localhost")
    repo.create_commit(ref, who, who, f"round {round_}\n", top.write(), parents)
    repo.remotes.create_anonymous(url).push([f"{ref}:{ref}"])


@dataclass(frozen=True)
class _Sides:
    """Both writers, on the same remote."""

    url: str
    source: GitSource
    publisher: StatusPublisher
    renderer: Renderer
    floor: pygit2.Repository

    def round(self, n: int, entries: int) -> tuple[float, float, float]:
        """Seconds of the baseline, `write_status` and `publish`, each rewriting every record."""
        files = self.renderer.render(records(entries, 2 * n - 1), (), revision=None)
        base = _seconds(lambda: baseline_commit(self.floor, self.url, files, n))
        write = _seconds(lambda: self.source.write_status(files, f"round {n}\n"))
        changed = records(entries, 2 * n)
        publish = _seconds(lambda: self.publisher.publish(
            changed, (), revision=None, refusal=None, finished=(), started=0))
        return base, write, publish


def measure(entries: int, rounds: int = ROUNDS, *, url: str | None = None) -> Rewrite:
    """With `url`, on that remote (whose status branch it rewrites); else on one of N
    generated task files."""
    with TemporaryDirectory(prefix="bench-rewrite-") as tmp:
        root = Path(tmp)
        if url is not None:
            return _measure(entries, rounds, url, root)
        make_bare_remote(root / "served" / "big.git", repository(entries))
        with GitDaemon(root / "served") as server:
            return _measure(entries, rounds, server.url("big.git"), root)


def _measure(entries: int, rounds: int, url: str, root: Path) -> Rewrite:
    source = GitSource(url, root / "state")
    source.fetch()
    publisher = StatusPublisher(source, redact=Redactor())
    publisher.restored(source.read_status(), {})
    publisher.publish(records(entries, 0), (), revision=None, refusal=None,
                      finished=(), started=0)  # the branch holds N records
    sides = _Sides(url, source, publisher, Renderer(branch=source.branch, redact=Redactor()),
                   pygit2.init_repository(str(root / "floor.git"), bare=True))
    times = [sides.round(n, entries) for n in range(1, rounds + 1)]
    base, write, publish = (statistics.median(column) for column in zip(*times, strict=True))
    return Rewrite(entries, base, write, publish)


def _seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    logger.disable("reconciler")
    for entries in sizes("1000,10000"):
        r = measure(entries)
        print(f"{entries:>6} records rewritten: TreeBuilder commit + push {r.baseline:.2f} s; "
              f"write_status {r.write:.2f} s ({r.write / r.baseline:.2f}x); "
              f"publish (render + commit + push) {r.publish:.2f} s "
              f"({r.publish / r.baseline:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
