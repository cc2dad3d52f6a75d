"""Status records: what has actually happened to each entry (the observed state).

A record is what a status file holds (DESIGN §3) and what `plan` reads back. It survives restarts
because it lives on the status branch; folding a finished run into a record is pure, here, so the
daemon, `--once` and the tests share one definition of what a run's outcome means.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler.runs import PlanChanges, StackResult
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


def new_record(entry: EntryId, kind: Kind, name: str) -> EntryRecord:
    return EntryRecord(entry=entry, kind=kind, name=name)


def _run_info(report: Any) -> RunInfo:
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


def _drift_after(previous: DriftInfo | None, report: Any) -> DriftInfo:
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


def fold_report(record: EntryRecord, report: Any) -> EntryRecord:
    """Record what a finished (or running) run means for its entry.

    `report` is a `runs.RunReport`, or what `adoption.Report` reads of one.
    """
    updates: dict[str, Any] = {}
    result: StackResult | None = report.result
    if result is not None and result.engine:
        updates["engine"] = result.engine
        updates["engine_version"] = result.version
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
