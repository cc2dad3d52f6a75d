"""Status records: what has actually happened to each entry (the observed state).

A record is what a status file holds (DESIGN §3) and what `plan` reads back. It survives restarts
because it lives on the status branch. Every way a record changes is a pure function here
(`declared`, `with_status`, `started`, `observed`, `fold_report`): `plan` and adoption call
them, and the daemon only stores what they return, so the daemon, `--once` and the tests share
one definition of what a declaration, a decision and a run's outcome mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler.declarations.entries import Entry
from reconciler.runs import PlanChanges, RunReport, RunRequest, StackResult
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


class _Record(BaseModel):
    # extra="ignore": a status file written by a newer version must not stop an older daemon.
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
    )


class RunInfo(_Record):
    id: RunId
    operation: Operation
    trigger: Trigger
    spec_hash: SpecHash
    revision: Revision
    attempt: int = 1
    state: RunState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    message: str = ""
    log_tail: str = ""


HISTORY_LIMIT = 10
"""Runs a status file keeps inline (DESIGN §9); `reconciler history` reads older ones from Git."""


class RunSummary(_Record):
    """A finished run as the history keeps it: a RunInfo without its log tail or spec hash."""

    id: RunId
    operation: Operation
    trigger: Trigger
    attempt: int = 1
    state: RunState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    commit: Revision
    exit_code: int | None = None
    message: str = ""


class Success(_Record):
    """The last successful run that changed something (a task run, a stack apply or plan)."""

    run_id: RunId
    spec_hash: SpecHash
    revision: Revision
    finished_at: datetime


class DriftInfo(_Record):
    state: DriftState = DriftState.UNKNOWN
    checked_at: datetime | None = None
    first_detected_at: datetime | None = Field(
        default=None, description="Kept while drift persists; cleared when back in sync."
    )
    changes: PlanChanges = Field(default_factory=PlanChanges)
    addresses: tuple[str, ...] = ()
    message: str = ""
    run_id: RunId | None = None
    remediated_by: RunId | None = None


class Requests(_Record):
    """The request annotations (DESIGN §9) whose values have been handled: a value is run
    once, and a restart reads it back from the status file instead of running it again."""

    run: str | None = None
    plan: str | None = None


class EntryRecord(_Record):
    entry: EntryId
    kind: Kind
    name: str
    spec_hash: SpecHash | None = Field(
        default=None, description="The declared version this record reflects."
    )
    commit: Revision | None = Field(
        default=None,
        description="The source commit of that version (or of the last run), so an unrelated "
        "commit does not rewrite every status file.",
    )
    source: str | None = Field(default=None, description="path:line of the declaration.")
    phase: Phase = Phase.PENDING
    message: str = ""
    last_run: RunInfo | None = None
    last_success: Success | None = None
    dependencies: dict[EntryId, RunId] = Field(
        default_factory=dict,
        description="The successful run of each dependency that the last run started after.",
    )
    schedule_anchor: datetime | None = Field(
        default=None, description="Cron fire times at or before this have been handled."
    )
    drift_anchor: datetime | None = None
    engine: str | None = None
    engine_version: str | None = None
    changes: PlanChanges | None = Field(default=None, description="Last plan or apply summary.")
    drift: DriftInfo | None = None
    prune: bool = Field(
        default=False, description="The last declared `prune` of a stack: destroy on removal."
    )
    requests: Requests | None = Field(
        default=None, description="The request annotation values handled (None: none).")
    history: tuple[RunSummary, ...] = Field(
        default=(), description=f"The last {HISTORY_LIMIT} finished runs, newest first.")
    # In memory only (never in a status file, so those stay as they are): the declarations a
    # destroy needs once its own is gone. The daemon recalls `applied` from the commit
    # `last_success` names when a record is read back from the status branch.
    applied: Entry | None = Field(
        default=None, exclude=True,
        description="The declaration of the version `last_success` brought into force.")
    launched: Entry | None = Field(
        default=None, exclude=True,
        description="The declaration of the last run started that brings a version into force.")


def new_record(entry: EntryId, kind: Kind, name: str) -> EntryRecord:
    return EntryRecord(entry=entry, kind=kind, name=name)


def _run_info(report: RunReport) -> RunInfo:
    return RunInfo(
        id=report.run_id,
        operation=report.operation,
        trigger=report.trigger,
        spec_hash=report.spec_hash,
        revision=report.revision,
        attempt=report.attempt,
        state=report.state,
        started_at=report.started_at,
        finished_at=report.finished_at,
        exit_code=report.exit_code,
        message=report.message,
        log_tail=report.log_tail,
    )


def _summary(report: RunReport) -> RunSummary:
    duration = None
    if report.started_at is not None and report.finished_at is not None:
        duration = round((report.finished_at - report.started_at).total_seconds(), 3)
    return RunSummary(
        id=report.run_id, operation=report.operation, trigger=report.trigger,
        attempt=report.attempt, state=report.state, started_at=report.started_at,
        finished_at=report.finished_at, duration_seconds=duration, commit=report.revision,
        exit_code=report.exit_code, message=report.message)


def with_history(history: tuple[RunSummary, ...], report: RunReport) -> tuple[RunSummary, ...]:
    """`history` with the finished run of `report` first; a run reported again replaces its
    earlier line, so each run appears once."""
    if not report.state.finished:
        return history
    summary = _summary(report)
    if history and history[0] == summary:
        return history  # the same report seen again: the record stays the same object
    rest = tuple(run for run in history if run.id != report.run_id)
    return (summary, *rest)[:HISTORY_LIMIT]


def _drift_after(previous: DriftInfo | None, report: RunReport) -> DriftInfo:
    result: StackResult | None = report.result
    succeeded = report.state == RunState.SUCCEEDED
    state = DriftState.ERROR
    if succeeded and result is not None and result.drift is not None:
        state = result.drift
    first = previous.first_detected_at if previous else None
    if state == DriftState.DRIFTED:
        first = first or report.finished_at
    elif state == DriftState.IN_SYNC:
        first = None
    message = "" if succeeded else ((result.error if result else None) or report.message)
    return DriftInfo(
        state=state,
        checked_at=report.finished_at,
        first_detected_at=first,
        changes=result.changes if result else PlanChanges(),
        addresses=result.addresses if result else (),
        message=message,
        run_id=report.run_id,
    )


def fold_report(record: EntryRecord, report: RunReport) -> EntryRecord:
    """Record what a finished (or running) run means for its entry."""
    updates: dict[str, Any] = {}
    result: StackResult | None = report.result
    if result is not None and result.engine:
        updates["engine"] = result.engine
        updates["engine_version"] = result.version
    history = with_history(record.history, report)
    if history is not record.history:
        updates["history"] = history
    if report.operation == Operation.DRIFT:
        if report.state.finished:
            updates["drift"] = _drift_after(record.drift, report)
        return record.model_copy(update=updates)
    updates["last_run"] = _run_info(report)
    if result is not None:
        updates["changes"] = result.changes
    if report.state == RunState.SUCCEEDED and report.operation == Operation.DESTROY:
        # Nothing is applied any more: if the stack is declared again it is applied afresh.
        updates["last_success"] = None
    elif report.state == RunState.SUCCEEDED:
        updates["last_success"] = Success(
            run_id=report.run_id,
            spec_hash=report.spec_hash,
            revision=report.revision,
            finished_at=report.finished_at or report.started_at,
        )
        if report.operation == Operation.APPLY and record.drift is not None:
            # The saved plan was applied: the infrastructure matches the code as of now.
            updates["drift"] = record.drift.model_copy(
                update={
                    "state": DriftState.IN_SYNC,
                    "checked_at": report.finished_at,
                    "first_detected_at": None,
                    "changes": PlanChanges(),
                    "addresses": (),
                    "message": "",
                    "remediated_by": report.run_id
                    if report.trigger == Trigger.REMEDIATE
                    else record.drift.remediated_by,
                }
            )
    return record.model_copy(update=updates)


def declared(record: EntryRecord, entry: Entry, *, drift: bool, prune: bool,
             revision: Revision | None) -> EntryRecord:
    """`record` as the declaration `entry` in force at `revision` describes it: its version,
    the commit of that version, where it is declared, whether it is destroyed on removal, and
    a drift block (Unknown until the first check) once it has a drift schedule. The same
    record when nothing changes."""
    changed = record.spec_hash != entry.spec_hash
    drift_info = DriftInfo() if record.drift is None and drift else record.drift
    commit = revision if changed or record.commit is None else record.commit
    source = f"{entry.location.path}:{entry.location.line}"
    success = record.last_success
    # The same version: what a destroy needs, as declared now.
    applies = success is not None and success.spec_hash == entry.spec_hash and (
        record.applied is None or record.applied.spec_hash != entry.spec_hash)
    if not changed and not applies and (record.drift, record.commit, record.source,
                                        record.prune) == (drift_info, commit, source, prune):
        return record  # the steady state of every cycle: checked without a copy
    update: dict[str, object] = {"drift": drift_info, "spec_hash": entry.spec_hash,
                                 "commit": commit, "source": source, "prune": prune}
    if applies:
        update["applied"] = entry
    return record.model_copy(update=update)


def with_status(record: EntryRecord, phase: Phase, message: str) -> EntryRecord:
    """`record` in `phase`, `message` saying why; the same record when it already is."""
    if (record.phase, record.message) == (phase, message):
        return record
    return record.model_copy(update={"phase": phase, "message": message})


def with_applied(record: EntryRecord, entry: Entry | None) -> EntryRecord:
    """`record` knowing the declaration of its version in force (recalled after a restart)."""
    return record if entry is None else record.model_copy(update={"applied": entry})


def started(record: EntryRecord, request: RunRequest, *, message: str,
            dependencies: Mapping[EntryId, RunId]) -> EntryRecord:
    """`record` once `request` is submitted: Running, its run pending, and the cron fire
    times and dependency runs it handles recorded, so neither starts it again."""
    entry = request.entry
    pending = RunReport(
        run_id=request.run_id, entry_id=entry.id, spec_hash=entry.spec_hash,
        operation=request.operation, trigger=request.trigger, attempt=request.attempt,
        revision=request.revision, state=RunState.PENDING, started_at=request.requested_at)
    updates: dict[str, object] = {"phase": Phase.RUNNING, "message": message}
    if request.operation is Operation.DRIFT:
        updates["drift_anchor"] = request.requested_at
    else:
        updates.update(schedule_anchor=request.requested_at, drift_anchor=request.requested_at,
                       dependencies=dict(dependencies))
    if request.operation not in (Operation.DRIFT, Operation.DESTROY):
        updates["launched"] = entry
    return fold_report(record, pending).model_copy(update=updates)


def observed(record: EntryRecord, report: RunReport) -> EntryRecord:
    """`record` with what `report` says of its run folded in; the same record when the report
    is of a run older than the one the record shows (see `is_stale`)."""
    if is_stale(record, report):
        return record
    folded = fold_report(record, report)
    success = folded.last_success
    if success is None:
        return folded.model_copy(update={"applied": None}) if folded.applied else folded
    for known in (folded.applied, folded.launched):
        if known is not None and known.spec_hash == success.spec_hash:
            return folded if known is folded.applied else folded.model_copy(
                update={"applied": known})
    return folded


def is_stale(record: EntryRecord, report: RunReport) -> bool:
    """A report of a run older than the one the record already shows (an unacknowledged run
    reported again after a newer one started) must not roll the record back."""
    last = record.drift if report.operation is Operation.DRIFT else record.last_run
    if last is None:
        return False
    last_id = last.run_id if isinstance(last, DriftInfo) else last.id
    begun = last.checked_at if isinstance(last, DriftInfo) else last.started_at
    return (last_id is not None and last_id != report.run_id and begun is not None
            and report.started_at is not None and report.started_at < begun)
