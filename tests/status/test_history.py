"""The last runs each status file keeps inline (DESIGN §9 "History")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from reconciler import status
from reconciler.records import HISTORY_LIMIT, EntryRecord, fold_report, new_record
from reconciler.redact import Redactor
from reconciler.runs import RunReport
from reconciler.types import (
    EntryId,
    Kind,
    Operation,
    Revision,
    RunId,
    RunState,
    SpecHash,
    Trigger,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _report(n: int, state: RunState = RunState.SUCCEEDED, *,
            op: Operation = Operation.RUN) -> RunReport:
    started = T0 + timedelta(minutes=n)
    return RunReport(
        run_id=RunId(f"r{n}"), entry_id=EntryId("task/t"), spec_hash=SpecHash("h1"),
        operation=op, trigger=Trigger.SCHEDULE, attempt=1, revision=Revision(f"{n:040d}"),
        state=state, started_at=started,
        finished_at=started + timedelta(seconds=2) if state.finished else None,
        exit_code=0 if state is RunState.SUCCEEDED else None, log_tail="lots of output")


def _record() -> EntryRecord:
    return new_record(EntryId("task/t"), Kind.TASK, "t")


def test_a_finished_run_goes_first_and_only_the_last_ten_are_kept() -> None:
    record = _record()
    for n in range(1, 14):
        record = fold_report(record, _report(n))
    assert [r.id for r in record.history] == [f"r{n}" for n in range(13, 3, -1)]
    assert len(record.history) == HISTORY_LIMIT
    first = record.history[0]
    assert (first.commit, first.duration_seconds, first.exit_code) == (f"{13:040d}", 2.0, 0)


def test_a_run_appears_once_and_a_running_one_not_at_all() -> None:
    record = fold_report(_record(), _report(1))
    record = fold_report(record, _report(2, RunState.RUNNING))
    assert [r.id for r in record.history] == ["r1"]
    record = fold_report(record, _report(2, RunState.FAILED))
    again = fold_report(record, _report(2, RunState.FAILED))
    assert again.history is record.history
    assert [(r.id, r.state) for r in again.history] == [
        ("r2", RunState.FAILED), ("r1", RunState.SUCCEEDED)]


def test_a_drift_plan_counts_as_a_run() -> None:
    record = fold_report(_record(), _report(1))
    record = fold_report(record, _report(2, op=Operation.DRIFT))
    assert [(r.id, r.operation) for r in record.history] == [
        ("r2", Operation.DRIFT), ("r1", Operation.RUN)]


def test_the_status_file_shows_the_history_and_a_file_without_one_still_loads() -> None:
    record = fold_report(fold_report(_record(), _report(1, RunState.FAILED)), _report(2))
    data = status.render_record(record, branch="main", redact=Redactor(()))
    text = data.decode()
    assert "history:" in text
    assert "durationSeconds: 2.0" in text
    assert text.count("lots of output") == 1  # the last run's tail only, not the history's
    assert status.parse_record("status/tasks/t.yaml", data) == record
    old = json.dumps(record.model_dump(mode="json", exclude={"history"})).encode()
    assert b"history" not in old
    read = status.parse_record("status/tasks/t.yaml", old)
    assert read.history == ()
    assert read.last_run == record.last_run


def test_the_readme_counts_the_recent_runs() -> None:
    record = fold_report(fold_report(_record(), _report(1, RunState.FAILED)), _report(2))
    readme = status.render_readme([record], branch="main", revision=None, errors=0).decode()
    assert "| Recent runs |" in readme
    assert "| 1 succeeded, 1 failed |" in readme
