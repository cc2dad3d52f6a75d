"""Adopting what executors durably know into status records that lost it (DESIGN §7). Pure.

The status branch is the daemon's memory, but a person may reset it (or delete it) while the
journal in the state dir, or the Jobs in the cluster, still know which versions ran and how.
A restarted daemon folds those runs into any record that is missing or older, exactly as it
folded them when they finished, so a version that succeeded is Succeeded again and is never run
a second time; a version whose retries were used up stays Failed.

A run is adopted with what the daemon recorded when it started it: the cron fire times and drift
checks it handled (its start time), and the successful run of each dependency that had finished
before it started, so neither a schedule nor a dependency starts it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from reconciler.records import EntryRecord, fold_report, new_record
from reconciler.runs import RunReport
from reconciler.types import (
    EntryId,
    Operation,
    Phase,
    RunId,
    RunState,
    split_entry_id,
)

_EPOCH = datetime.min.replace(tzinfo=UTC)
_PHASES = {
    RunState.SUCCEEDED: Phase.SUCCEEDED,
    RunState.FAILED: Phase.FAILED,
    RunState.TIMED_OUT: Phase.TIMED_OUT,
}


def adopt(
    records: Mapping[EntryId, EntryRecord],
    depends_on: Mapping[EntryId, Sequence[EntryId]],
    reports: Sequence[RunReport],
) -> tuple[dict[EntryId, EntryRecord], list[RunReport]]:
    """`records` with every finished run of `reports` (oldest first) that a record lacks
    folded in; `depends_on`: each declared entry's dependencies. Returns the records and the
    runs adopted."""
    result = dict(records)
    adopted: list[RunReport] = []
    for report in sorted(reports, key=_when):
        if not report.state.finished or report.entry_id not in depends_on:
            continue
        record = result.get(report.entry_id) or new_record(
            report.entry_id, *split_entry_id(report.entry_id))
        if not _newer(record, report):
            continue
        result[report.entry_id] = _fold(record, report)
        adopted.append(report)
    for report in adopted:
        record = result[report.entry_id]
        if record.last_run is not None and record.last_run.id == report.run_id:
            deps = _dependencies_seen(result, depends_on[report.entry_id], _when(report))
            result[report.entry_id] = record.model_copy(update={"dependencies": deps})
    return result, adopted


def shown(records: Iterable[EntryRecord]) -> set[RunId]:
    """The finished runs the records already show: nothing to adopt of them."""
    runs: set[RunId] = set()
    for record in records:
        if record.last_run is not None and record.last_run.state.finished:
            runs.add(record.last_run.id)
        if record.last_success is not None:
            runs.add(record.last_success.run_id)
        if record.drift is not None and record.drift.run_id is not None:
            runs.add(record.drift.run_id)
    return runs


def _when(report: RunReport) -> datetime:
    return report.started_at or report.finished_at or _EPOCH


def _newer(record: EntryRecord, report: RunReport) -> bool:
    """Whether the record does not show `report` yet, nor anything after it."""
    if report.operation is Operation.DRIFT:
        drift = record.drift
        if drift is None or drift.run_id is None:
            return True
        return drift.run_id != report.run_id and (drift.checked_at or _EPOCH) < (
            report.finished_at or _EPOCH)
    last = record.last_run
    if last is None:
        return True
    if last.id == report.run_id:
        return not last.state.finished  # recorded while it ran: the executor knows the end
    return (last.started_at or last.finished_at or _EPOCH) < _when(report)


def _fold(record: EntryRecord, report: RunReport) -> EntryRecord:
    folded = fold_report(record, report)
    start = _when(report)
    if report.operation is Operation.DRIFT:
        return folded.model_copy(update={"drift_anchor": _later(record.drift_anchor, start)})
    update: dict[str, object] = {
        "spec_hash": report.spec_hash,
        "commit": report.revision,
        "schedule_anchor": _later(record.schedule_anchor, start),
        "drift_anchor": _later(record.drift_anchor, start),
        "message": f"{report.run_id}: {report.state.value} (adopted from the executor's records)",
    }
    phase = _PHASES.get(report.state)
    if phase is Phase.SUCCEEDED and report.operation is Operation.PLAN:
        phase = Phase.PLANNED
    if phase is not None:
        update["phase"] = phase
    return folded.model_copy(update=update)


def _later(anchor: datetime | None, start: datetime) -> datetime | None:
    if start == _EPOCH:
        return anchor
    return start if anchor is None or anchor < start else anchor


def _dependencies_seen(
    records: Mapping[EntryId, EntryRecord], dependencies: Sequence[EntryId], start: datetime
) -> dict[EntryId, RunId]:
    """The successful run of each dependency that had finished when a run started: the ones
    the daemon saw (and recorded) when it started that run."""
    seen: dict[EntryId, RunId] = {}
    for dep in dependencies:
        success = records[dep].last_success if dep in records else None
        if success is not None and success.finished_at <= start:
            seen[dep] = success.run_id
    return seen
