"""Cycle time after a one-file change in a 10,000-entry repository, against a full re-parse;
and the daemon's memory with 10,000 entries loaded.

The repository is generated (10,000 task files of ~26 lines in 100 folders), served by
`git daemon` on 127.0.0.1, and changed by a user with the git CLI. Figures are printed, not
asserted: the floor to compare with is PERFORMANCE.md's 7.8 ms for fetch + tree compare +
parse/validate/hash of one file.
"""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from loguru import logger

from reconciler import status
from reconciler.declarations.entries import DesiredState
from reconciler.declarations.loader import DeclarationLoader
from reconciler.kinds.base import registry
from reconciler.plan import plan
from reconciler.records import EntryRecord, RunInfo, Success
from reconciler.redact import Redactor
from reconciler.source.gitsource import GitSource
from reconciler.types import EntryId, Operation, Phase, Revision, RunId, RunState, Trigger
from tests.support.gitservers import GitDaemon, GitUser, make_bare_remote

ENTRIES = 10_000
FOLDERS = 100
CHANGES = 5


def task_file(folder: int, index: int, day: str = "monday") -> str:
    return f"""\
# Generated task {index} in team {folder}.
apiVersion: reconciler.io/v1alpha1
kind: Task
metadata:
  name: t{folder:03d}-{index:05d}
  labels:
    team: team-{folder:03d}
    tier: batch
spec:
  image: python:3.12-slim
  command: ["python3", "-c", "print('report {index}')"]
  args: ["--verbose"]
  env:
    REPORT_DAY: {day}
    REGION: eu-west-1
  resources:
    requests: {{cpu: 100m, memory: 128Mi}}
    limits: {{cpu: "1", memory: 512Mi}}
  timeout: 30m
  retries: 2
  nodeSelector:
    pool: batch
  suspend: false
  tolerations: []
  dependsOn: []
"""


def repository() -> dict[str, str]:
    per_folder = ENTRIES // FOLDERS
    return {
        f"team-{f:03d}/task-{i:05d}.yaml": task_file(f, i)
        for f in range(FOLDERS) for i in range(f * per_folder, (f + 1) * per_folder)
    }


def settled(desired: DesiredState) -> dict[EntryId, EntryRecord]:
    """Every entry succeeded at its current version: the steady state a cycle starts from."""
    now = datetime.now(UTC)
    records = {}
    for entry in desired.entries.values():
        run = RunInfo(id=RunId(f"{entry.name}-r1"), operation=Operation.RUN, trigger=Trigger.NEW,
                      spec_hash=entry.spec_hash, revision=desired.revision or Revision(""),
                      state=RunState.SUCCEEDED, started_at=now, finished_at=now)
        # As plan leaves a record it has nothing to change in: the declaration's version,
        # commit and place, the phase of a version in force, and that version's declaration.
        records[entry.id] = EntryRecord(
            entry=entry.id, kind=entry.kind, name=entry.name, spec_hash=entry.spec_hash,
            commit=run.revision, source=f"{entry.location.path}:{entry.location.line}",
            phase=Phase.SUCCEEDED, message=f"{run.id} succeeded",
            last_run=run, last_success=Success(run_id=run.id, spec_hash=entry.spec_hash,
                                               revision=run.revision, finished_at=now),
            applied=entry)
    return records


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = action()
    return (time.perf_counter() - started) * 1000, value


def main() -> None:
    logger.disable("reconciler")
    with TemporaryDirectory(prefix="bench-cycle-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        make_bare_remote(root / "served" / "big.git", repository())
        print(f"generated {ENTRIES} task files in {FOLDERS} folders "
              f"({time.perf_counter() - started:.1f} s)")
        with GitDaemon(root / "served") as server:
            url = server.url("big.git")
            user = GitUser(url, root / "user").clone()
            source = GitSource(url, root / "state")
            loader = DeclarationLoader(cache_file=root / "state" / "declarations.cache")

            full_ms, desired = timed(lambda: loader.load(source.files(source.fetch()),
                                                         source.fetch()))
            assert isinstance(desired, DesiredState)
            loader.save_cache()
            gc.collect()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            records = settled(desired)
            plan_ms, _ = timed(lambda: plan(desired, records, {}, datetime.now(UTC),
                                              kinds=registry()))
            renderer = status.Renderer(branch="main", redact=Redactor())
            render_ms, files = timed(lambda: renderer.render(records, (),
                                                             revision=desired.revision))
            assert isinstance(files, dict)
            one = next(iter(records))
            records[one] = records[one].model_copy(update={"message": "changed"})
            rerender_ms, _ = timed(lambda: renderer.render(records, (),
                                                           revision=desired.revision))
            print(f"full load (fetch + parse + validate + hash {len(desired.entries)} entries): "
                  f"{full_ms:.0f} ms; peak RSS {rss:.0f} MiB")
            print(f"plan over {len(records)} settled entries: {plan_ms:.1f} ms; "
                  f"status files: first render {render_ms:.0f} ms, "
                  f"after one record changed {rerender_ms:.0f} ms")

            cycles, reparse = [], []
            for n in range(CHANGES):
                user.commit({"team-042/task-04200.yaml": task_file(42, 4200, f"day-{n}")},
                            f"Change {n}")
                user.push()
                ms, new = timed(lambda: _incremental(source, loader))
                assert isinstance(new, DesiredState)
                assert not new.errors
                cycles.append(ms)
                reparse.append(_full_reparse(source, new.revision or Revision("")))
            cycle, base = statistics.median(cycles), statistics.median(reparse)
            print(f"after a one-file change: poll + fetch + load {cycle:.1f} ms "
                  f"(median of {CHANGES}); full re-parse of the same commit {base:.0f} ms; "
                  f"ratio {base / cycle:.0f}x")
            restart = DeclarationLoader(cache_file=root / "state" / "declarations.cache")
            warm_ms, _ = timed(lambda: restart.load(source.files(source.head()
                                                                   or Revision(""))))
            print(f"restart with the persisted parse cache: load {warm_ms:.0f} ms "
                  f"({restart.stats.parsed} files parsed)")
    sys.stdout.flush()


def _full_reparse(source: GitSource, revision: Revision) -> float:
    fresh = DeclarationLoader()
    return timed(lambda: fresh.load(source.files(revision)))[0]


def _incremental(source: GitSource, loader: DeclarationLoader) -> DesiredState:
    head = source.head()
    assert head is not None
    revision = source.fetch()
    return loader.load(source.files(revision), revision)


if __name__ == "__main__":
    main()
