"""Adoption of what an executor durably knows into records that lack it: pure, one table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.adoption import adopt
from reconciler.records import EntryRecord, RunInfo, fold_report, new_record
from reconciler.runs import RunReport, StackResult
from reconciler.types import (
    DriftState,
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

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HASH = SpecHash("a" * 64)
OLD_HASH = SpecHash("b" * 64)
REV = Revision("1" * 40)
A, B = EntryId("task/a"), EntryId("task/b")
W = EntryId("stack/w")


def run(entry: EntryId, run_id: str, minute: int, state: RunState = RunState.SUCCEEDED,
        **extra: Any) -> RunReport:
    values: dict[str, Any] = {
        "run_id": RunId(run_id), "entry_id": entry, "spec_hash": HASH,
        "operation": Operation.RUN, "trigger": Trigger.NEW, "attempt": 1, "revision": REV,
        "state": state, "started_at": T0 + timedelta(minutes=minute),
        "finished_at": T0 + timedelta(minutes=minute, seconds=30), "exit_code": 0,
        "log_tail": "done", **extra}
    if "result" in values:  # a stack run's result line, as the executor parsed it
        values["result"] = StackResult.from_result(
            {"operation": values["operation"].value, **values["result"]})
    return RunReport(**values)


def record(entry: EntryId, *reports: RunReport, **update: Any) -> EntryRecord:
    kind, name = (Kind.STACK if entry.startswith("stack/") else Kind.TASK), entry.split("/")[1]
    made = new_record(entry, kind, name)
    for report in reports:
        made = fold_report(made, report)
    return made.model_copy(update=update)


def running(report: RunReport) -> RunReport:
    return report.model_copy(update={"state": RunState.RUNNING, "finished_at": None})


DEPS = {A: (), B: (A,), W: ()}


@pytest.mark.parametrize(("name", "records", "reports", "want"), [
    ("missing record: the success is adopted", {}, [run(A, "a1", 0)],
     {A: ("a1", Phase.SUCCEEDED, "a1")}),
    ("a record that saw the run start learns how it ended",
     {A: record(A, running(run(A, "a1", 0)))}, [run(A, "a1", 0)],
     {A: ("a1", Phase.SUCCEEDED, "a1")}),
    ("a newer run in the record is kept",
     {A: record(A, run(A, "a2", 5))}, [run(A, "a1", 0)],
     {A: ("a2", Phase.PENDING, "a2")}),
    ("an older version's record gets the current version's success",
     {A: record(A, run(A, "a0", -9, spec_hash=OLD_HASH))}, [run(A, "a1", 0)],
     {A: ("a1", Phase.SUCCEEDED, "a1")}),
    ("a failure after the success: Failed, the success kept",
     {}, [run(A, "a1", 0), run(A, "a2", 5, RunState.FAILED, exit_code=1)],
     {A: ("a2", Phase.FAILED, "a1")}),
    ("undeclared entries are left alone", {}, [run(EntryId("task/gone"), "g1", 0)], {}),
])
def test_adoption(name: str, records: dict[EntryId, EntryRecord], reports: list[RunReport],
                  want: dict[EntryId, tuple[str, Phase, str | None]]) -> None:
    adopted, _ = adopt(records, DEPS, reports)
    got = {
        entry: (r.last_run.id if r.last_run else None, r.phase,
                r.last_success.run_id if r.last_success else None)
        for entry, r in adopted.items()
    }
    assert got == want, name


def test_an_adopted_run_keeps_the_marks_its_start_set() -> None:
    """The cron fires and drift checks before its start were handled by it, and the
    dependency success it started after is recorded, so neither starts it again."""
    a_run = run(A, "a1", 0)
    b_run = run(B, "b1", 1, revision=Revision("2" * 40))
    records, adopted = adopt({}, DEPS, [b_run, a_run])

    assert [r.run_id for r in adopted] == ["a1", "b1"]  # oldest first
    b = records[B]
    assert b.dependencies == {A: "a1"}
    assert b.schedule_anchor == b.drift_anchor == b_run.started_at
    assert (b.spec_hash, b.commit) == (HASH, Revision("2" * 40))


def test_a_dependency_that_succeeded_after_the_run_started_is_not_counted_as_seen() -> None:
    records, _ = adopt({}, DEPS, [run(B, "b1", 0), run(A, "a1", 5)])
    assert records[B].dependencies == {}  # so the plan runs b again after a's newer success


def test_the_newest_drift_check_is_adopted_apart_from_the_apply() -> None:
    apply = run(W, "w-a1", 0, operation=Operation.APPLY)
    drift = run(W, "w-d1", 60, operation=Operation.DRIFT, trigger=Trigger.DRIFT,
                result={"drift": "Drifted", "changes": {"change": 1}})
    stale = record(W, apply, last_run=RunInfo(
        id=RunId("w-a1"), operation=Operation.APPLY, trigger=Trigger.NEW, spec_hash=HASH,
        revision=REV, state=RunState.SUCCEEDED, started_at=apply.started_at))

    records, adopted = adopt({W: stale}, DEPS, [apply, drift])

    assert [r.run_id for r in adopted] == ["w-d1"]
    w = records[W]
    assert w.drift is not None
    assert (w.drift.state, w.drift.run_id) == (DriftState.DRIFTED, "w-d1")
    assert w.drift_anchor == drift.started_at
    assert w.last_run is not None
    assert w.last_run.id == "w-a1"
