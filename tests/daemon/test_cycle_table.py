"""The whole cycle as a table: declarations pushed and how each run ends → the starts made and
each record's phase. In memory (tests/support/fakes.py): no Git, no processes, a clock that does
not move; the declarations loader, plan, records and status rendering are the real ones."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.daemon.core import Daemon
from reconciler.declarations.loader import DeclarationLoader
from reconciler.metrics import Metrics
from reconciler.runs import PlanChanges, StackResult
from reconciler.types import DriftState, EntryId, Operation, Phase, RunState, Trigger
from tests.support.fakes import ManualExecutor, MemorySource

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
MODULE = {"stacks/net/main.tf": 'resource "terraform_data" "x" {}\n'}


def doc(kind: str, name: str, **spec: Any) -> str:
    return json.dumps({"apiVersion": "reconciler.io/v1alpha1", "kind": kind,
                       "metadata": {"name": name}, "spec": spec}) + "\n"


def task(name: str, **spec: Any) -> dict[str, str]:
    return {f"{name}.yaml": doc("Task", name, command=["true"], **spec)}


def stack(name: str = "net", **spec: Any) -> dict[str, str]:
    return {f"{name}.yaml": doc("Stack", name, path=f"stacks/{name}", **spec), **MODULE}


@dataclass
class World:
    source: MemorySource
    executor: ManualExecutor
    daemon: Daemon

    def phase(self, entry: str) -> Phase:
        return self.daemon.records[EntryId(entry)].phase

    def starts(self) -> tuple[tuple[str, Operation, Trigger], ...]:
        return tuple((r.entry.id, r.operation, r.trigger) for r in self.executor.submitted)


def world(files: dict[str, str], *, slots: int = 4) -> World:
    source = MemorySource(files)
    executor = ManualExecutor(slots=slots)
    daemon = Daemon(source=source, loader=DeclarationLoader(), executor=executor,
                    metrics=Metrics(process_metrics=False), clock=lambda: NOW)
    return World(source, executor, daemon)


@dataclass(frozen=True)
class Row:
    name: str
    files: dict[str, str]
    phases: dict[str, Phase]
    starts: tuple[tuple[str, Operation, Trigger], ...]
    ends: tuple[RunState, ...] = ()
    """How each run ends, in the order they start."""
    then: Mapping[str, str | None] = field(default_factory=dict)
    """A commit pushed once those runs ended."""
    slots: int = 4
    messages: dict[str, str] = field(default_factory=dict)
    """A part of the message of these records."""


RUN, NEW = (Operation.RUN, Trigger.NEW)
OK, FAILED = RunState.SUCCEEDED, RunState.FAILED

ROWS = [
    Row("a new task runs and succeeds", task("a"), {"task/a": Phase.SUCCEEDED},
        (("task/a", RUN, NEW),), ends=(OK,)),
    Row("a failure with no retries is Failed", task("a"), {"task/a": Phase.FAILED},
        (("task/a", RUN, NEW),), ends=(FAILED,), messages={"task/a": "failed after 1 attempt"}),
    Row("a failure with retries left waits for its backoff", task("a", retries=1),
        {"task/a": Phase.RETRYING}, (("task/a", RUN, NEW),), ends=(FAILED,),
        messages={"task/a": "attempt 1 of 2 failed; retrying at"}),
    Row("a dependent starts once its dependency succeeded",
        {**task("a"), **task("b", dependsOn=["task/a"])},
        {"task/a": Phase.SUCCEEDED, "task/b": Phase.SUCCEEDED},
        (("task/a", RUN, NEW), ("task/b", RUN, NEW)), ends=(OK, OK)),
    Row("the dependent of a failed task is Blocked",
        {**task("a"), **task("b", dependsOn=["task/a"])},
        {"task/a": Phase.FAILED, "task/b": Phase.BLOCKED}, (("task/a", RUN, NEW),),
        ends=(FAILED,), messages={"task/b": "waiting for task/a (Failed)"}),
    Row("no free slot: the second run waits, Pending", {**task("a"), **task("b")},
        {"task/a": Phase.RUNNING, "task/b": Phase.PENDING}, (("task/a", RUN, NEW),), slots=1,
        messages={"task/b": "new; waiting for a free slot"}),
    Row("a slot freed: the waiting run starts", {**task("a"), **task("b")},
        {"task/a": Phase.SUCCEEDED, "task/b": Phase.SUCCEEDED},
        (("task/a", RUN, NEW), ("task/b", RUN, NEW)), ends=(OK, OK), slots=1),
    Row("a changed declaration runs again", task("a"), {"task/a": Phase.RUNNING},
        (("task/a", RUN, NEW), ("task/a", RUN, Trigger.CHANGED)), ends=(OK,),
        then=task("a", retries=2)),
    Row("a suspended task does not run", task("a", suspend=True), {"task/a": Phase.SUSPENDED},
        ()),
    Row("an invalid declaration is Invalid and does not run", task("a", timeout="soon"),
        {"task/a": Phase.INVALID}, ()),
    Row("a removed task is Orphaned: nothing is destroyed", task("a"),
        {"task/a": Phase.ORPHANED}, (("task/a", RUN, NEW),), ends=(OK,),
        then={"a.yaml": None}, messages={"task/a": "nothing was destroyed"}),
    Row("a removed stack with prune is destroyed", stack(prune=True),
        {"stack/net": Phase.RUNNING},
        (("stack/net", Operation.APPLY, NEW), ("stack/net", Operation.DESTROY, Trigger.PRUNE)),
        ends=(OK,), then={"net.yaml": None}),
    Row("a removed stack still named in the commit is held, not destroyed", stack(prune=True),
        {"stack/net": Phase.ORPHANED}, (("stack/net", Operation.APPLY, NEW),), ends=(OK,),
        then={"net.yaml": None,
              "notes.yaml": "apiVersion: example.com/v1\nkind: Stack\nmetadata:\n  name: net\n"},
        messages={"stack/net": "declaration removed; not destroyed"}),
    Row("a removed stack is not destroyed while the commit has load errors", stack(prune=True),
        {"stack/net": Phase.ORPHANED}, (("stack/net", Operation.APPLY, NEW),), ends=(OK,),
        then={"net.yaml": None, **task("other", timeout="soon")},
        messages={"stack/net": "not destroyed because the commit has load errors"}),
    Row("a plan-only stack is Planned, and never destroyed",
        stack(apply="plan", prune=True), {"stack/net": Phase.ORPHANED},
        (("stack/net", Operation.PLAN, NEW),), ends=(OK,), then={"net.yaml": None},
        messages={"stack/net": "nothing was destroyed"}),
]


def play(row: Row) -> World:
    w = world(row.files, slots=row.slots)
    w.daemon.cycle()
    ends = list(row.ends)
    while ends and w.executor.unfinished():
        w.executor.finish(w.executor.unfinished()[0], ends.pop(0))
        w.daemon.cycle(fetch=False)
    assert not ends, f"runs left to end: {ends}"
    if row.then:
        w.source.push(row.then)
        w.daemon.cycle()
    w.daemon.cycle(fetch=False)  # a phase quoting another entry's follows it one cycle later
    return w


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_cycle(row: Row) -> None:
    w = play(row)
    assert w.starts() == row.starts
    assert {e: w.phase(e) for e in row.phases} == row.phases
    for entry, part in row.messages.items():
        assert part in w.daemon.records[EntryId(entry)].message
    # What the cycle stored is what the status branch holds, once a commit held back while
    # a run is in flight is made (at the latest when the daemon stops).
    w.daemon.flush_status()
    assert w.source.status_commits, "no status commit"
    for entry in row.phases:
        kind, name = entry.split("/")
        assert f"phase: {w.phase(entry).value}" in w.source.status[
            f"status/{kind}s/{name}.yaml"].decode()


def test_a_stack_with_a_drift_schedule_starts_with_drift_unknown() -> None:
    w = world(stack(drift={"schedule": "0 */6 * * *"}))
    w.daemon.cycle()
    drift = w.daemon.records[EntryId("stack/net")].drift
    assert drift is not None
    assert drift.state is DriftState.UNKNOWN
    assert "state: Unknown" in w.source.status["status/stacks/net.yaml"].decode()


def test_a_destroy_runs_the_declaration_that_was_applied() -> None:
    w = world(stack(prune=True, vars={"size": "large"}))
    w.daemon.cycle()
    applied = w.executor.submitted[0]
    w.source.push(stack(prune=True, vars={"size": "small"}))  # a new version, not applied yet
    w.executor.finish(applied.run_id)
    w.daemon.cycle()
    w.executor.finish(w.executor.submitted[1].run_id, RunState.FAILED)
    w.daemon.cycle(fetch=False)
    w.source.push({"net.yaml": None})
    w.daemon.cycle()
    destroy = w.executor.submitted[-1]
    assert destroy.operation is Operation.DESTROY
    assert destroy.entry == applied.entry  # the version in force, not the one that failed
    assert destroy.revision == applied.revision


def test_after_a_restart_a_destroy_recalls_the_declaration_from_its_commit() -> None:
    """The daemon restarted after the declaration was removed: the record read back from the
    status branch names the commit its version was applied at, and that commit holds it."""
    w = world(stack(prune=True))
    w.daemon.cycle()
    applied = w.executor.submitted[0]
    w.executor.finish(applied.run_id)
    w.daemon.cycle(fetch=False)
    w.source.push({"net.yaml": None})
    executor = ManualExecutor()
    restarted = Daemon(source=w.source, loader=DeclarationLoader(), executor=executor,
                       metrics=Metrics(process_metrics=False), clock=lambda: NOW)
    restarted.cycle()
    assert [(r.operation, r.entry) for r in executor.submitted] == [
        (Operation.DESTROY, applied.entry)]
    assert restarted.records[EntryId("stack/net")].phase is Phase.RUNNING


def test_run_now_is_a_cycle_of_one_request() -> None:
    w = world({**stack(drift={"schedule": "0 */6 * * *"}), **task("other")})
    w.executor.ends = RunState.SUCCEEDED
    w.daemon.cycle()
    w.daemon.cycle(fetch=False)
    w.executor.ends = None
    done = threading.Event()
    records: list[object] = []
    worker = threading.Thread(target=lambda: records.append(w.daemon.run_now(
        EntryId("stack/net"), Operation.DRIFT, stop=done, poll_seconds=0.01)))
    worker.start()
    try:
        request = w.executor.wait_submitted(3)
        assert (request.entry.id, request.operation, request.trigger) == (
            "stack/net", Operation.DRIFT, Trigger.MANUAL)
        w.executor.finish(request.run_id, result=StackResult(
            operation=Operation.DRIFT, drift=DriftState.DRIFTED, changes=PlanChanges(add=1)))
        worker.join(30)
    finally:
        done.set()
    assert not worker.is_alive()
    record = w.daemon.records[EntryId("stack/net")]
    assert records == [record]
    assert record.drift is not None
    assert record.drift.state is DriftState.DRIFTED
    assert len(w.executor.submitted) == 3  # nothing else started
    assert "state: Drifted" in w.source.status["status/stacks/net.yaml"].decode()


def test_run_now_refuses_what_it_cannot_start() -> None:
    w = world({**stack(), **task("other")}, slots=1)
    w.daemon.cycle()  # the apply is in flight: no slot is free
    stop = threading.Event()
    commits = len(w.source.status_commits)
    with pytest.raises(LookupError, match="stack/gone is not declared"):
        w.daemon.run_now(EntryId("stack/gone"), Operation.DRIFT, stop=stop)
    with pytest.raises(RuntimeError, match="a run of stack/net is in flight"):
        w.daemon.run_now(EntryId("stack/net"), Operation.DRIFT, stop=stop)
    with pytest.raises(RuntimeError, match="requested; waiting for a free slot"):
        w.daemon.run_now(EntryId("task/other"), Operation.RUN, stop=stop)
    assert len(w.source.status_commits) == commits  # a request that started nothing
