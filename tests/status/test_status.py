"""Status files as users read them, and run outcomes folded into records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ruamel.yaml import YAML

from reconciler import status
from reconciler.declarations.entries import LoadError, Location
from reconciler.records import DriftInfo, EntryRecord, fold_report, new_record
from reconciler.redact import Redactor
from reconciler.runs import PlanChanges, RunReport, StackResult
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

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
REV = Revision("c" * 40)
CANARY = "canary-Zq8xW3s9"


def report(state: RunState, *, op: Operation = Operation.RUN, run_id: str = "r1",
           result: dict[str, Any] | None = None, **kw: Any) -> RunReport:
    return RunReport(run_id=RunId(run_id), entry_id=EntryId(kw.pop("entry", "task/report")),
                     spec_hash=SpecHash("h1"), operation=op, trigger=Trigger.NEW, attempt=1,
                     revision=REV, state=state, started_at=T0,
                     finished_at=T0 + timedelta(seconds=3) if state.finished else None,
                     exit_code=kw.pop("exit_code", None),
                     result=StackResult.from_result({"operation": op.value, **result})
                     if result else None, **kw)


def task_record() -> EntryRecord:
    return new_record(EntryId("task/report"), Kind.TASK, "report")


def test_a_failed_run_is_readable_and_secrets_are_masked() -> None:
    rec = fold_report(task_record(), report(
        RunState.FAILED, exit_code=3, message="exit code 3",
        log_tail=f"reading token\nusing {CANARY}\nTraceback: boom"))
    rec = rec.model_copy(update={"phase": Phase.FAILED, "spec_hash": SpecHash("h1")})
    files = status.render({rec.entry: rec}, [], branch="main", revision=REV,
                          redact=Redactor([CANARY]))
    text = files["status/tasks/report.yaml"].decode()
    assert text.startswith("# Written by reconciler")
    assert CANARY not in text
    data = YAML(typ="safe").load(text)
    assert data["phase"] == "Failed"
    assert data["lastRun"]["exitCode"] == 3
    assert data["lastRun"]["logTail"].splitlines() == ["reading token", "using ****",
                                                       "Traceback: boom"]
    assert "| [task/report](tasks/report.yaml) | Failed |" in files["status/README.md"].decode()


def test_rendering_is_deterministic_and_round_trips() -> None:
    rec = fold_report(task_record(), report(RunState.SUCCEEDED, exit_code=0))
    once = status.render({rec.entry: rec}, [], branch="main", revision=REV, redact=Redactor())
    twice = status.render({rec.entry: rec}, [], branch="main", revision=REV, redact=Redactor())
    assert once == twice
    assert status.changed_files(once, twice) == {}
    back, problems = status.parse(once)
    assert problems == []
    assert back == {rec.entry: rec}


def test_drift_and_long_messages_show_in_the_table() -> None:
    stack = new_record(EntryId("stack/network"), Kind.STACK, "network").model_copy(update={
        "phase": Phase.SUCCEEDED, "message": "word " * 100,
        "drift": DriftInfo(state=DriftState.DRIFTED, changes=PlanChanges(change=4))})
    files = status.render({stack.entry: stack}, [], branch="main", revision=REV,
                          redact=Redactor())
    readme = files["status/README.md"].decode()
    row = next(line for line in readme.splitlines() if "stack/network" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["Succeeded", "Drifted (+0 ~4 -0)"]
    assert cells[-1].endswith("word\u2026")
    assert len(cells[-1]) == 200
    assert "1 Succeeded (1 drifted)" in readme


def test_errors_file_names_path_line_and_column() -> None:
    err = LoadError(location=Location(path="tasks/bad.yaml", line=7, column=14),
                    field="spec.timeout", message="'30x' is not a duration")
    files = status.render({}, [err], branch="main", revision=REV, redact=Redactor())
    data = YAML(typ="safe").load(files["status/errors.yaml"])
    assert data["errors"][0]["text"] == "tasks/bad.yaml:7:14: spec.timeout: '30x' is not a duration"
    assert "1 load error (see [errors.yaml](errors.yaml))" in files["status/README.md"].decode()


def test_unreadable_status_file_is_reported_not_fatal() -> None:
    records, problems = status.parse({"status/tasks/x.yaml": b"phase: [unclosed",
                                      "status/notes.txt": b"mine"})
    assert records == {}
    assert len(problems) == 1
    assert "status/tasks/x.yaml" in problems[0]


def test_only_record_files_are_ever_deleted() -> None:
    changes = status.changed_files(
        {"status/tasks/old.yaml": b"x", "status/notes.md": b"a person's notes"},
        {"status/README.md": b"new"})
    assert changes == {"status/tasks/old.yaml": None, "status/README.md": b"new"}


def test_success_is_remembered_and_a_later_failure_keeps_it() -> None:
    ok = fold_report(task_record(), report(RunState.SUCCEEDED, exit_code=0))
    assert ok.last_success is not None
    assert ok.last_success.run_id == "r1"
    failed = fold_report(ok, report(RunState.FAILED, run_id="r2", exit_code=1))
    assert failed.last_run is not None
    assert failed.last_run.id == "r2"
    assert failed.last_success == ok.last_success


def stack_record() -> EntryRecord:
    return new_record(EntryId("stack/net"), Kind.STACK, "net")


def test_drift_found_then_remediated() -> None:
    drifted = report(RunState.SUCCEEDED, op=Operation.DRIFT, entry="stack/net", run_id="d1",
                     result={"engine": "terraform", "version": "1.15.5", "drift": "Drifted",
                             "changes": {"add": 0, "change": 1, "destroy": 0},
                             "addresses": ["terraform_data.app"]})
    rec = fold_report(stack_record(), drifted)
    assert rec.drift is not None
    assert (rec.drift.state, rec.drift.changes.change, rec.drift.addresses) == (
        DriftState.DRIFTED, 1, ("terraform_data.app",))
    assert rec.drift.first_detected_at == drifted.finished_at
    assert rec.last_run is None  # a drift check is not an apply
    assert (rec.engine, rec.engine_version) == ("terraform", "1.15.5")

    again = fold_report(rec, drifted.model_copy(update={
        "run_id": RunId("d2"), "finished_at": T0 + timedelta(hours=1)}))
    assert again.drift is not None
    assert again.drift.first_detected_at == drifted.finished_at  # kept while drift persists

    applied = fold_report(again, report(RunState.SUCCEEDED, op=Operation.APPLY, entry="stack/net",
                                        run_id="a1", result={"changes": {"change": 1}})
                          .model_copy(update={"trigger": Trigger.REMEDIATE}))
    assert applied.drift is not None
    assert applied.drift.state is DriftState.IN_SYNC
    assert applied.drift.first_detected_at is None
    assert applied.drift.remediated_by == "a1"


def test_failed_drift_check_is_an_error_with_the_engine_message() -> None:
    rec = fold_report(stack_record().model_copy(update={"drift": DriftInfo()}), report(
        RunState.FAILED, op=Operation.DRIFT, entry="stack/net",
        result={"error": "Error: Unsupported block type"}))
    assert rec.drift is not None
    assert rec.drift.state is DriftState.ERROR
    assert rec.drift.message == "Error: Unsupported block type"


def test_successful_destroy_forgets_the_last_apply() -> None:
    applied = fold_report(stack_record(), report(RunState.SUCCEEDED, op=Operation.APPLY,
                                                 entry="stack/net"))
    destroyed = fold_report(applied, report(RunState.SUCCEEDED, op=Operation.DESTROY,
                                            entry="stack/net", run_id="x1"))
    assert destroyed.last_success is None
    assert destroyed.last_run is not None
    assert destroyed.last_run.operation is Operation.DESTROY
