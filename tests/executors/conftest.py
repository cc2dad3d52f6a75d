"""One executor test suite, run against every executor through a harness.

A harness makes executors over one shared place (a state dir, a namespace), stores secrets
where its executor reads them, and stops whatever runs a test left behind. To run the suite
against another executor, add a harness class and its name to `HARNESSES`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

from reconciler.declarations.entries import Entry, Location
from reconciler.declarations.fields import parse_duration
from reconciler.declarations.models import TaskSpec
from reconciler.executors.base import Executor
from reconciler.executors.local.executor import LocalExecutor
from reconciler.executors.local.history import RUNS_DIR, supervised
from reconciler.executors.local.journal import Journal
from reconciler.runs import RunReport, RunRequest, run_id_for
from reconciler.types import EntryId, Kind, Operation, Revision, RunId, SpecHash, Trigger, entry_id
from tests.kubernetes.harness import KubernetesHarness
from tests.support.processes import process_alive
from tests.support.waiting import wait_until

REVISION = Revision("0123456789abcdef0123456789abcdef01234567")


class Harness(Protocol):
    name: str

    def make(self, *, max_parallel: int = 4) -> Executor:
        """A new executor over the harness's shared state."""
        ...

    def add_secret(self, secret: str, key: str, value: str) -> None: ...

    def process_alive(self, pid: int) -> bool | None:
        """Whether a process that a run started (its pid as the run printed it) still exists;
        None where the harness cannot see a run's processes."""
        ...

    def cleanup(self) -> None: ...


class LocalHarness:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.state_dir = root / "state"
        self.secrets_dir = root / "secrets"
        self.secrets_dir.mkdir()
        self.executors: list[LocalExecutor] = []

    def make(self, *, max_parallel: int = 4, **options: Any) -> LocalExecutor:
        executor = LocalExecutor(
            state_dir=self.state_dir,
            secrets_dir=self.secrets_dir,
            max_parallel=max_parallel,
            kill_grace_seconds=0.5,
            **options,
        )
        self.executors.append(executor)
        return executor

    def add_secret(self, secret: str, key: str, value: str) -> None:
        folder = self.secrets_dir / secret
        folder.mkdir(exist_ok=True)
        (folder / key).write_text(value)

    def process_alive(self, pid: int) -> bool | None:
        return process_alive(pid)

    def cleanup(self) -> None:
        for executor in self.executors:
            executor.close()
        if not self.state_dir.exists():
            return
        # Cancel what is still running, then wait until every supervisor has gone.
        with LocalExecutor(state_dir=self.state_dir, kill_grace_seconds=0.2) as executor:
            for report in executor.poll():
                if not report.state.finished:
                    executor.cancel(report.run_id)
        runs = list((self.state_dir / RUNS_DIR).glob("*"))
        wait_until(lambda: not any(supervised(folder) for folder in runs), timeout=15,
                   what="every supervisor to exit")


HARNESSES: dict[str, Callable[[Path], Harness]] = {
    "local": LocalHarness,
    "kubernetes": KubernetesHarness,
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    made = HARNESSES[request.param](tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalHarness]:
    made = LocalHarness(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def task_entry(
    name: str,
    command: Sequence[str],
    *,
    args: Sequence[str] = (),
    files: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    secret_env: Mapping[str, tuple[str, str]] | None = None,
    timeout: str = "60s",
) -> Entry:
    """A Task as the loader would produce it; `secret_env` maps NAME to (secret, key)."""
    spec = TaskSpec.model_validate({
        "image": "busybox:1.36",
        "command": list(command),
        "args": list(args),
        "env": dict(env or {}),
        "secretEnv": {k: {"secret": s, "key": key} for k, (s, key) in (secret_env or {}).items()},
        "files": dict(files or {}),
        "timeout": timeout,
    })
    digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
    return Entry(
        id=entry_id(Kind.TASK, name),
        kind=Kind.TASK,
        name=name,
        spec=spec,
        spec_hash=SpecHash(digest),
        location=Location(path=f"tasks/{name}.yaml"),
        timeout_seconds=int(parse_duration(timeout).total_seconds()),
        files=dict(files or {}),
    )


def request_for(
    entry: Entry, *, attempt: int = 1, trigger: Trigger = Trigger.NEW, salt: str = ""
) -> RunRequest:
    return RunRequest(
        run_id=run_id_for(entry, Operation.RUN, attempt, salt=salt),
        entry=entry,
        operation=Operation.RUN,
        trigger=trigger,
        attempt=attempt,
        revision=REVISION,
        requested_at=datetime.now(UTC),
    )


def report_of(executor: Executor, run_id: RunId) -> RunReport | None:
    matches = [r for r in executor.poll() if r.run_id == run_id]
    assert len(matches) <= 1, f"{run_id} reported {len(matches)} times"
    return matches[0] if matches else None


def wait_for_run(
    executor: Executor,
    run_id: RunId,
    predicate: Callable[[RunReport], bool] = lambda r: r.state.finished,
    *,
    timeout: float = 15.0,
) -> RunReport:
    """The run's report once `predicate` holds for it (by default: once it has finished)."""
    seen: list[RunReport | None] = [None]

    def check() -> RunReport | None:
        seen[0] = report = report_of(executor, run_id)
        return report if report is not None and predicate(report) else None

    return wait_until(check, timeout=timeout, what=f"run {run_id} to reach the state awaited",
                      details=lambda: f"last report: {seen[0]!r}")


def supervisor_pid(executor: LocalExecutor, state_dir: Path, run_id: RunId) -> int:
    """The pid of a run's supervisor, once the journal has it: the host's answer is read by a
    thread, and recorded by the executor's next call."""

    def recorded() -> int | None:
        executor.poll()
        journal = Journal(state_dir, readonly=True)
        try:
            row = journal.get(run_id)
        finally:
            journal.close()
        return row.pid if row is not None else None

    return wait_until(recorded, what=f"the pid of run {run_id}'s supervisor")


def entry_ids(reports: Sequence[RunReport]) -> list[EntryId]:
    return [r.entry_id for r in reports]
