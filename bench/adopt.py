"""What a restart pays to adopt durable runs, and what a poll pays to check the status branch.

- `LocalExecutor.latest` over a journal of 10,000 entries (three acknowledged runs each, a log
  file per run), for every declared version at once: one query, then a report per row found.
  With records that show every run (the usual restart) no report is built; with none (a status
  branch deleted while the daemon was down) every version's runs are, and adopted.
- The status branch check after a poll: untouched (no fetch), and moved on by one commit on top
  of a history of 2,000 status commits (one fetch and one ancestry test from the new head);
  the ancestry test alone, for a commit on top and for a branch reset to its first commit.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from loguru import logger

from reconciler.adoption import adopt, shown
from reconciler.executors.local.executor import LocalExecutor
from reconciler.executors.local.history import run_dir
from reconciler.executors.local.journal import Journal
from reconciler.records import fold_report, new_record
from reconciler.runs import RunRequest, run_id_for
from reconciler.source.gitsource import GitSource
from reconciler.source.writer import contains
from reconciler.types import EntryId, Kind, Operation, Revision, RunState, SpecHash, Trigger
from tests.executors.conftest import task_entry
from tests.support.gitservers import GitDaemon, GitUser, make_bare_remote

ENTRIES = int(os.environ.get("BENCH_ENTRIES", "10000"))
RUNS_PER_ENTRY = 3
HISTORY = 2_000
REVISION = Revision("0" * 40)
STATUS = "reconciler-status"


def _median_ms(action: Callable[[], object], runs: int = 5) -> float:
    action()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def _fill_journal(state: Path) -> dict[EntryId, SpecHash]:
    journal = Journal(state)
    journal._db.execute("PRAGMA synchronous=OFF")  # a benchmark's setup, not the daemon's
    journal._db.execute("BEGIN")
    versions: dict[EntryId, SpecHash] = {}
    start = datetime(2024, 5, 1, tzinfo=UTC)
    for n in range(ENTRIES):
        entry = task_entry(f"t{n}", ["true"])
        versions[entry.id] = entry.spec_hash
        for attempt in range(1, RUNS_PER_ENTRY + 1):
            request = RunRequest(run_id=run_id_for(entry, Operation.RUN, attempt), entry=entry,
                                 operation=Operation.RUN, trigger=Trigger.NEW, attempt=attempt,
                                 revision=REVISION, requested_at=start)
            journal.add(request, submitted_at=start)
            journal.mark_running(request.run_id, started_at=start + timedelta(minutes=attempt))
            journal.finish(request.run_id, RunState.SUCCEEDED, exit_code=0, message="",
                           finished_at=start + timedelta(minutes=attempt, seconds=5))
            folder = run_dir(state, request.run_id)
            folder.mkdir(parents=True)
            (folder / "log").write_text("a line of output\n" * 20)
    journal.acknowledge([r.run_id for r in journal.unacknowledged()])
    journal._db.execute("COMMIT")
    journal.close()
    return versions


def _executor_side(root: Path) -> None:
    state = root / "state"
    state.mkdir()
    versions = _fill_journal(state)
    depends: dict[EntryId, tuple[EntryId, ...]] = {e: () for e in versions}
    with LocalExecutor(state_dir=state) as executor:
        reports = executor.latest(versions)
        held = {r.entry_id: fold_report(new_record(r.entry_id, Kind.TASK, r.entry_id[5:]), r)
                for r in reports}
        known = shown(held.values())
        lost = _median_ms(lambda: executor.latest(versions), runs=3)
        intact = _median_ms(lambda: executor.latest(versions, known), runs=3)
    print(f"latest() of {ENTRIES} versions, none recorded ({len(reports)} reports): {lost:.0f} ms")
    print(f"latest() of {ENTRIES} versions, all recorded (0 reports): {intact:.0f} ms")
    print(f"adopt() into no records: {_median_ms(lambda: adopt({}, depends, reports)):.0f} ms")


def _long_status_history(user: GitUser) -> None:
    """HISTORY status commits on the status branch, made in one go by `git fast-import`."""
    stream = []
    for n in range(HISTORY):
        data = f"n: {n}\n"
        stream += [f"commit refs/heads/{STATUS}", f"committer bench <b@example.com> {n} +0000",
                   "data 6", "status", "M 100644 inline status/tasks/a.yaml",
                   f"data {len(data)}", data]
    subprocess.run(["git", "fast-import", "--quiet"], input="\n".join(stream) + "\n", text=True,
                   cwd=user.workdir, env=user.env, check=True)
    user.git("push", "--quiet", "origin", f"refs/heads/{STATUS}:refs/heads/{STATUS}")
    user.git("checkout", "--quiet", STATUS)


def _source_side(root: Path) -> None:
    make_bare_remote(root / "served" / "repo.git", {"README.md": "x\n"})
    with GitDaemon(root / "served") as daemon:
        user = GitUser(daemon.url("repo.git"), root / "user").clone()
        _long_status_history(user)
        source = GitSource(daemon.url("repo.git"), root / "mirror", status_branch=STATUS)
        source.read_status()
        source.write_status({"status/tasks/a.yaml": b"ours\n"}, "status")
        print(f"poll + check, untouched: "
              f"{_median_ms(lambda: (source.head(), source.status_changed()), runs=20):.2f} ms")
        user.git("pull", "--quiet", "origin", STATUS)
        samples = []
        for n in range(5):
            user.commit({"NOTES.md": f"{n}\n"}, "A note")
            user.push(STATUS)
            started = time.perf_counter()
            source.head()
            assert source.status_changed() is None
            samples.append(time.perf_counter() - started)
        print(f"poll + check, one commit on top of {HISTORY}: "
              f"{statistics.median(samples) * 1000:.2f} ms (mostly the fetch)")
        repo = source.remote.repository
        head = source.remote.local_head(STATUS)
        assert head is not None
        below = Revision(str(repo[head].parent_ids[0]))
        first = Revision(user.git("rev-list", "--max-parents=0", "HEAD"))
        print(f"ancestry test, one commit on top: "
              f"{_median_ms(lambda: contains(repo, head, below), runs=20):.3f} ms")
        rewritten = Revision(
            user.git("commit-tree", "-p", first, "-m", "reset", f"{first}^{{tree}}"))
        user.git("push", "--quiet", "origin", f"{rewritten}:refs/heads/elsewhere")
        source.remote.fetch([], optional=["elsewhere"])
        print(f"ancestry test, rewritten to the first of {HISTORY} commits: "
              f"{_median_ms(lambda: contains(repo, rewritten, head), runs=5):.3f} ms")


def main() -> None:
    logger.disable("reconciler")
    with TemporaryDirectory(prefix="bench-adopt-") as tmp:
        _executor_side(Path(tmp))
        _source_side(Path(tmp))
