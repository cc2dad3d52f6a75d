"""Plan: a pure function of (desired, observed, now) → what to start and each entry's phase.

No Git, no executor, no clock: every input is passed in, so each rule is one row of a table test.
Rules, in the order they are applied to a declared entry:

1. A run in flight → Running. Nothing else starts for that entry (one run per entry at a time,
   so a stack never has an apply, a drift plan and a destroy at once). A version changed while
   its run is in flight runs after it.
2. `suspend: true` → Suspended.
3. A dependency not succeeded at its current version, or running → Blocked.
4. Its current version never succeeded: new or changed → run; failed → retry with exponential
   backoff while `retries` lasts, then Failed (or TimedOut) until the declaration changes or
   its cron fires. An interrupted run is retried without using up an attempt.
5. Succeeded at this version: a dependency succeeded again since → run (trigger dependency); the
   cron fired since the last run → run (schedule); a stack's drift cron fired → drift plan; drift
   found with `remediate: true` → apply.

Entries no longer declared: Invalid when the file they were last seen in failed to load (a typo
never counts as a removal); a stack with `prune: true` is destroyed only when the commit loaded
without errors; otherwise Orphaned. Nothing else ever destroys.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from reconciler.declarations.entries import DesiredState, Entry, LoadError
from reconciler.declarations.fields import cron_trigger
from reconciler.records import EntryRecord
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

RETRY_BASE = timedelta(seconds=10)
RETRY_MAX = timedelta(minutes=10)
DESTROY_ATTEMPTS = 3


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Lifecycle(_Value):
    """What plan needs to know of an entry's kind, as values: each kind in `kinds/` says it
    for its entries, so no rule here names a kind."""

    success: Operation = Field(description="What brings a new version into force.")
    schedule: str | None = Field(default=None, description="A cron that runs `success` again.")
    drift: str | None = Field(default=None, description="A cron of drift plans.")
    remediate: bool = Field(default=False, description="Drift found: run `success` again.")
    prune: bool = Field(default=False, description="Destroy what it made when it is removed.")

    @property
    def steady(self) -> Phase:
        """The phase of a version that is in force."""
        return Phase.PLANNED if self.success is Operation.PLAN else Phase.SUCCEEDED


class KindRules(Protocol):
    """What plan asks of a kind (`kinds.base.KindDef` provides it)."""

    def lifecycle(self, entry: Entry) -> Lifecycle: ...


class ActiveRun(_Value):
    """A run an executor reports as pending or running."""

    run_id: RunId
    operation: Operation
    spec_hash: SpecHash
    attempt: int


class Start(_Value):
    """Start one run. `entry` is None for a destroy, whose declaration is gone: the daemon
    loads it from `revision`, the commit it was last applied at."""

    entry_id: EntryId
    entry: Entry | None
    operation: Operation
    trigger: Trigger
    attempt: int = 1
    salt: str = Field(default="", description="Separates runs of one version and attempt.")
    revision: Revision | None = None
    dependencies: dict[EntryId, RunId] = Field(default_factory=dict)
    message: str = ""


class Status(_Value):
    phase: Phase
    message: str = ""


class Plan(_Value):
    starts: tuple[Start, ...] = ()
    statuses: dict[EntryId, Status] = Field(
        default_factory=dict, description="The phase of every entry that is not started now."
    )
    wake_at: datetime | None = Field(
        default=None, description="The earliest time a waiting retry becomes due."
    )


Decision = tuple[Start | None, Status | None, datetime | None]


def backoff(attempt: int) -> timedelta:
    """Delay after failed attempt `attempt`: 10 s, 20 s, 40 s, … at most 10 minutes."""
    delay: timedelta = RETRY_BASE * (2 ** max(attempt - 1, 0))
    return min(delay, RETRY_MAX)


def cron_fired(expression: str | None, since: datetime | None, now: datetime) -> datetime | None:
    """The latest fire time in (since, now], or None. With no `since` nothing has fired yet:
    a new entry's first run is its own, not a cron's."""
    if expression is None or since is None:
        return None
    trigger = cron_trigger(expression)
    fired = None
    nxt = trigger.get_next_fire_time(None, since + timedelta(seconds=1))
    while nxt is not None and nxt <= now:
        fired = nxt
        nxt = trigger.get_next_fire_time(fired, fired + timedelta(seconds=1))
    return fired


def _success_operation(entry: Entry) -> Operation:
    if entry.kind is Kind.TASK:
        return Operation.RUN
    return Operation.PLAN if entry.stack.apply == "plan" else Operation.APPLY


def _steady_phase(entry: Entry) -> Phase:
    return Phase.PLANNED if _success_operation(entry) is Operation.PLAN else Phase.SUCCEEDED


def _succeeded_at_current(entry: Entry | None, record: EntryRecord | None) -> bool:
    return (
        entry is not None
        and record is not None
        and record.last_success is not None
        and record.last_success.spec_hash == entry.spec_hash
    )


def _dependencies(
    entry: Entry,
    desired: DesiredState,
    records: Mapping[EntryId, EntryRecord],
    active: Mapping[EntryId, ActiveRun],
) -> tuple[dict[EntryId, RunId], str | None]:
    """The successful run of every dependency, or why the entry must wait."""
    seen: dict[EntryId, RunId] = {}
    for dep in entry.depends_on:
        dep_entry = desired.entries.get(dep)
        record = records.get(dep)
        if dep_entry is None:
            return seen, f"waiting for {dep} (invalid)"
        if dep in active:
            return seen, f"waiting for {dep} (running)"
        if not _succeeded_at_current(dep_entry, record) or record is None:
            phase = record.phase.value if record is not None else Phase.PENDING.value
            return seen, f"waiting for {dep} ({phase})"
        assert record.last_success is not None
        seen[dep] = record.last_success.run_id
    return seen, None


def _retry(entry: Entry, record: EntryRecord, now: datetime) -> Decision:
    """The current version ran and did not succeed: retry, wait for the backoff, or give up."""
    last = record.last_run
    assert last is not None
    op = _success_operation(entry)
    if last.state in (RunState.INTERRUPTED, RunState.RUNNING, RunState.PENDING):
        # The run vanished without a result (the runner or the machine died): run it again
        # without using up an attempt; the salt gives the new run its own identity.
        why = f"run {last.id} was interrupted; starting it again"
        return Start(entry_id=entry.id, entry=entry, operation=op, trigger=Trigger.RETRY,
                     attempt=last.attempt, salt=f"after-{last.id}", message=why), None, None
    failed_phase = Phase.TIMED_OUT if last.state is RunState.TIMED_OUT else Phase.FAILED
    if last.attempt > entry.spec.retries:
        tries = f"{last.attempt} attempt{'s' if last.attempt > 1 else ''}"
        detail = f": {last.message}" if last.message else ""
        return None, Status(phase=failed_phase, message=f"failed after {tries}{detail}"), None
    due = (last.finished_at or now) + backoff(last.attempt)
    if now < due:
        how = "timed out" if last.state is RunState.TIMED_OUT else "failed"
        msg = (f"attempt {last.attempt} of {entry.spec.retries + 1} {how}; "
               f"retrying at {due.isoformat()}")
        return None, Status(phase=Phase.RETRYING, message=msg), due
    return Start(entry_id=entry.id, entry=entry, operation=op, trigger=Trigger.RETRY,
                 attempt=last.attempt + 1, message=f"retry {last.attempt + 1}"), None, None


def _start(entry: Entry, deps: dict[EntryId, RunId], trigger: Trigger, message: str,
           salt: str = "") -> Decision:
    return Start(entry_id=entry.id, entry=entry, operation=_success_operation(entry),
                 trigger=trigger, salt=salt, dependencies=deps, message=message), None, None


def _schedule(entry: Entry) -> str | None:
    return entry.task.schedule if entry.kind is Kind.TASK else None


def _not_succeeded(entry: Entry, record: EntryRecord | None, deps: dict[EntryId, RunId],
                   now: datetime) -> Decision:
    """Rule 4: the current version has not succeeded yet."""
    if record is None or record.last_run is None:
        return _start(entry, deps, Trigger.NEW, "new")
    if record.last_run.spec_hash != entry.spec_hash:
        return _start(entry, deps, Trigger.CHANGED, "declaration changed")
    fired = cron_fired(_schedule(entry), record.schedule_anchor, now)
    if fired is not None and record.last_run.state.finished:
        return _start(entry, deps, Trigger.SCHEDULE, "schedule", salt=fired.isoformat())
    retry, status, wake = _retry(entry, record, now)
    if retry is not None:
        retry = retry.model_copy(update={"dependencies": deps})
    return retry, status, wake


def _succeeded(entry: Entry, record: EntryRecord, deps: dict[EntryId, RunId],
               now: datetime) -> Decision:
    """Rule 5: the current version succeeded; only a dependency, a cron or drift runs it."""
    for dep, run_id in deps.items():
        if record.dependencies.get(dep) != run_id:
            return _start(entry, deps, Trigger.DEPENDENCY, f"{dep} succeeded", salt=run_id)
    fired = cron_fired(_schedule(entry), record.schedule_anchor, now)
    if fired is not None:
        return _start(entry, deps, Trigger.SCHEDULE, "schedule", salt=fired.isoformat())
    if entry.kind is Kind.STACK:
        drift_start = _drift(entry, record, now)
        if drift_start is not None:
            return drift_start, None, None
    success = record.last_success.run_id if record.last_success else "the last run"
    return None, Status(phase=_steady_phase(entry), message=f"{success} succeeded"), None


def _declared(
    entry: Entry,
    desired: DesiredState,
    records: Mapping[EntryId, EntryRecord],
    active: Mapping[EntryId, ActiveRun],
    now: datetime,
) -> Decision:
    record = records.get(entry.id)
    running = active.get(entry.id)
    if running is not None:
        msg = f"{running.operation.value} {running.run_id} (attempt {running.attempt})"
        if running.spec_hash != entry.spec_hash and running.operation is not Operation.DRIFT:
            msg += "; the new version runs after it"
        return None, Status(phase=Phase.RUNNING, message=msg), None
    if entry.spec.suspend:
        return None, Status(phase=Phase.SUSPENDED, message="suspend: true"), None
    deps, waiting = _dependencies(entry, desired, records, active)
    if waiting is not None:
        return None, Status(phase=Phase.BLOCKED, message=waiting), None
    if record is None or not _succeeded_at_current(entry, record):
        return _not_succeeded(entry, record, deps, now)
    return _succeeded(entry, record, deps, now)


def _drift(entry: Entry, record: EntryRecord, now: datetime) -> Start | None:
    stack = entry.stack
    drift = record.drift
    if (
        stack.drift.remediate
        and stack.apply == "auto"
        and drift is not None
        and drift.state is DriftState.DRIFTED
        and drift.run_id is not None
        and drift.remediated_by is None
    ):
        return Start(entry_id=entry.id, entry=entry, operation=Operation.APPLY,
                     trigger=Trigger.REMEDIATE, salt=drift.run_id,
                     message=f"remediating drift found by {drift.run_id}")
    fired = cron_fired(stack.drift.schedule, record.drift_anchor, now)
    if fired is None:
        return None
    return Start(entry_id=entry.id, entry=entry, operation=Operation.DRIFT,
                 trigger=Trigger.DRIFT, salt=fired.isoformat(), message="drift check")


def _invalid_status(errors: tuple[LoadError, ...]) -> Status:
    first = str(errors[0]) if errors else "the declaration failed to load"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return Status(phase=Phase.INVALID, message=first + more)


def _undeclared(
    record: EntryRecord,
    desired: DesiredState,
    active: Mapping[EntryId, ActiveRun],
) -> tuple[Start | None, Status | None]:
    source_path = (record.source or "").rsplit(":", 2)[0]
    if source_path and source_path in desired.files_with_errors:
        return None, Status(
            phase=Phase.INVALID,
            message=f"{source_path} failed to load; keeping the last known version",
        )
    if record.entry in active:
        return None, Status(phase=Phase.RUNNING, message="declaration removed; run finishing")
    if record.phase is Phase.ORPHANED and not record.prune:
        return None, None
    last = record.last_run
    destroying = last is not None and last.operation is Operation.DESTROY
    if destroying and last is not None and last.state is RunState.SUCCEEDED:
        return None, Status(phase=Phase.ORPHANED, message="declaration removed; destroyed")
    if record.kind is Kind.STACK and record.prune and record.last_success is not None:
        if not desired.clean:
            return None, Status(
                phase=Phase.ORPHANED,
                message="declaration removed; not destroyed because the commit has load errors",
            )
        attempt = last.attempt + 1 if destroying and last is not None else 1
        if attempt > DESTROY_ATTEMPTS and last is not None:
            return None, Status(phase=Phase.FAILED, message=f"destroy failed: {last.message}")
        return Start(entry_id=record.entry, entry=None, operation=Operation.DESTROY,
                     trigger=Trigger.PRUNE, attempt=attempt,
                     revision=record.last_success.revision,
                     message="declaration removed with prune: true"), None
    return None, Status(phase=Phase.ORPHANED, message="declaration removed; nothing was destroyed")


def plan(
    desired: DesiredState,
    records: Mapping[EntryId, EntryRecord],
    active: Mapping[EntryId, ActiveRun],
    now: datetime,
) -> Plan:
    starts: list[Start] = []
    statuses: dict[EntryId, Status] = {}
    wakes: list[datetime] = []
    for entry_id in sorted(desired.entries):
        start, status, wake = _declared(desired.entries[entry_id], desired, records, active, now)
        if start is not None:
            starts.append(start)
        if status is not None:
            statuses[entry_id] = status
        if wake is not None:
            wakes.append(wake)
    for entry_id, errors in sorted(desired.invalid.items()):
        statuses[entry_id] = _invalid_status(errors)
    for entry_id in sorted(records.keys() - desired.entries.keys() - desired.invalid.keys()):
        start, status = _undeclared(records[entry_id], desired, active)
        if start is not None:
            starts.append(start)
        if status is not None:
            statuses[entry_id] = status
    return Plan(starts=tuple(starts), statuses=statuses, wake_at=min(wakes, default=None))
