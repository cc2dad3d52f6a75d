"""Plan: a pure function of (desired, observed, now) → what to start and how each record changes.

No Git, no executor, no clock: every input is passed in, so each rule is one row of a table test.
What a kind does (what brings a version into force, its crons, drift, prune) comes from its
`Lifecycle` (`kinds/`), so no rule here names a kind. Rules, in the order they are applied to a
declared entry:

1. A run in flight → Running. Nothing else starts for that entry (one run per entry at a time,
   so a stack never has an apply, a drift plan and a destroy at once). A version changed while
   its run is in flight runs after it.
2. `suspend: true` → Suspended.
3. A dependency not succeeded at its current version, or running → Blocked.
4. Its current version never succeeded: new or changed → run; failed → retry with exponential
   backoff while `retries` lasts, then Failed (or TimedOut) until the declaration changes or
   its cron fires. An interrupted run is retried without using up an attempt.
5. Succeeded at this version: a dependency succeeded again since → run (trigger dependency); the
   cron fired since the last run → run (schedule); the drift cron fired → drift plan; drift
   found with `remediate` → run again.

Entries no longer declared: Invalid when the file they were last seen in failed to load (a typo
never counts as a removal); one with `prune` is destroyed only when the commit loaded without
errors and nothing in it still names the entry (`held`); otherwise Orphaned. Nothing else ever
destroys. A start waits (Pending) while the executor has no free slot.

The result is a value: the runs to start and the new record of every entry whose record
changes, each made by a transition of `records`; the daemon stores them as they are. With
`only`, plan decides for those entries alone: the daemon passes the entries whose inputs changed
(`daemon.dirty`), and the full plan is the reference it is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from reconciler.declarations.entries import DesiredState, Entry, LoadError
from reconciler.declarations.fields import cron_trigger
from reconciler.records import (
    EntryRecord,
    Requests,
    declared,
    new_record,
    started,
    with_status,
)
from reconciler.runs import RunRequest, run_id_for
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
    split_entry_id,
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
    zone: str = Field(default="UTC", description="The IANA time zone `schedule` fires in.")
    remediate: bool = Field(default=False, description="Drift found: run `success` again.")
    prune: bool = Field(default=False, description="Destroy what it made when it is removed.")
    plans: Operation | None = Field(
        default=None, description="What a plan request runs; None: the kind cannot plan.")

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
    """Start one run. A destroy's declaration is gone: `entry` is the one the record holds of
    the version last brought into force, None when it holds none (the record says it failed)."""

    entry_id: EntryId
    entry: Entry | None
    operation: Operation
    trigger: Trigger
    attempt: int = 1
    salt: str = Field(default="", description="Separates runs of one version and attempt.")
    revision: Revision | None = None
    dependencies: dict[EntryId, RunId] = Field(default_factory=dict)
    message: str = ""
    answers: Requests | None = Field(
        default=None, description="The request values recorded as handled once it starts.")

    def request(self, now: datetime) -> RunRequest | None:
        """What the executor is asked to run; None when there is nothing to start it from."""
        if self.entry is None or self.revision is None:
            return None
        return RunRequest(
            run_id=run_id_for(self.entry, self.operation, self.attempt, salt=self.salt),
            entry=self.entry, operation=self.operation, trigger=self.trigger,
            attempt=self.attempt, revision=self.revision, requested_at=now)


class Status(NamedTuple):
    """A phase decided for a record (a plain tuple: one is made per entry every cycle)."""

    phase: Phase
    message: str = ""


class Plan(_Value):
    starts: tuple[Start, ...] = ()
    record_updates: dict[EntryId, EntryRecord] = Field(
        default_factory=dict, description="The new record of every entry whose record changes."
    )
    wakes: dict[EntryId, datetime] = Field(
        default_factory=dict, description="When each waiting retry becomes due."
    )
    timers: dict[EntryId, datetime] = Field(
        default_factory=dict,
        description="Per entry, the earliest time this plan, given the same inputs, could "
        "decide otherwise for it: a retry's backoff ends, a cron or drift cron fires. An entry "
        "absent: only a change of its inputs can. What lets the daemon plan only the entries "
        "whose inputs changed or whose time has come.",
    )
    waiting: frozenset[EntryId] = Field(
        default=frozenset(), description="The entries whose start waits for a free slot."
    )

    @property
    def wake_at(self) -> datetime | None:
        """The earliest time a waiting retry becomes due."""
        return min(self.wakes.values(), default=None)

    @property
    def changes_at(self) -> datetime | None:
        """The earliest time this plan, given the same inputs, could decide otherwise."""
        return min(self.timers.values(), default=None)


Decision = tuple[Start | None, Status | None, datetime | None]


def backoff(attempt: int) -> timedelta:
    """Delay after failed attempt `attempt`: 10 s, 20 s, 40 s, … at most 10 minutes."""
    delay: timedelta = RETRY_BASE * (2 ** max(attempt - 1, 0))
    return min(delay, RETRY_MAX)


def cron_fired(expression: str | None, since: datetime | None, now: datetime,
               zone: str = "UTC") -> datetime | None:
    """The latest fire time in (since, now], or None. With no `since` nothing has fired yet:
    a new entry's first run is its own, not a cron's."""
    if expression is None or since is None:
        return None
    trigger = cron_trigger(expression, zone)
    fired = None
    nxt = trigger.get_next_fire_time(None, since + timedelta(seconds=1))
    while nxt is not None and nxt <= now:
        fired = nxt
        nxt = trigger.get_next_fire_time(fired, fired + timedelta(seconds=1))
    return fired


def next_fire(expression: str | None, since: datetime | None, now: datetime,
              zone: str = "UTC") -> datetime | None:
    """The first fire time after `now` that `cron_fired` would count; None when it never
    counts one (no cron, or no anchor yet: see `cron_fired`)."""
    if expression is None or since is None:
        return None
    # From `now` itself, not a second after: an early answer costs one more plan, a late
    # one a missed fire.
    nxt: datetime | None = cron_trigger(expression, zone).get_next_fire_time(
        None, max(since, now))
    return nxt


def _timers(life: Lifecycle, record: EntryRecord, now: datetime) -> list[datetime]:
    """When time alone could change what plan decides for an entry: its crons' next fires."""
    if life.schedule is None and life.drift is None:
        return []
    fires = (next_fire(life.schedule, record.schedule_anchor, now, life.zone),
             next_fire(life.drift, record.drift_anchor, now))
    return [f for f in fires if f is not None]


def _succeeded_at_current(entry: Entry | None, record: EntryRecord | None) -> bool:
    return (
        entry is not None
        and record is not None
        and record.last_success is not None
        and record.last_success.spec_hash == entry.spec_hash
    )


def _in_force(entry: Entry, record: EntryRecord | None) -> bool:
    """Succeeded at its current version, and no later run of that version has failed since
    (a cron or requested run): such a failure is retried, then Failed, like any other."""
    if record is None or not _succeeded_at_current(entry, record):
        return False
    last, success = record.last_run, record.last_success
    assert success is not None
    return (last is None or last.id == success.run_id or last.spec_hash != entry.spec_hash
            or not last.state.finished or last.state is RunState.SUCCEEDED)


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


def _retry(entry: Entry, life: Lifecycle, record: EntryRecord, now: datetime) -> Decision:
    """The current version ran and did not succeed: retry, wait for the backoff, or give up."""
    last = record.last_run
    assert last is not None
    op = life.success
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


def _start(entry: Entry, life: Lifecycle, deps: dict[EntryId, RunId], trigger: Trigger,
           message: str, *, salt: str = "") -> Decision:
    return Start(entry_id=entry.id, entry=entry, operation=life.success,
                 trigger=trigger, salt=salt, dependencies=deps, message=message), None, None


def _not_succeeded(entry: Entry, life: Lifecycle, record: EntryRecord | None,
                   deps: dict[EntryId, RunId], now: datetime) -> Decision:
    """Rule 4: the current version has not succeeded yet."""
    if record is None or record.last_run is None:
        return _start(entry, life, deps, Trigger.NEW, "new")
    if record.last_run.spec_hash != entry.spec_hash:
        return _start(entry, life, deps, Trigger.CHANGED, "declaration changed")
    fired = cron_fired(life.schedule, record.schedule_anchor, now, life.zone)
    if fired is not None and record.last_run.state.finished:
        return _start(entry, life, deps, Trigger.SCHEDULE, "schedule", salt=fired.isoformat())
    retry, status, wake = _retry(entry, life, record, now)
    if retry is not None:
        retry = retry.model_copy(update={"dependencies": deps})
    return retry, status, wake


def _succeeded(entry: Entry, life: Lifecycle, record: EntryRecord,
               deps: dict[EntryId, RunId], now: datetime) -> Decision:
    """Rule 5: the current version succeeded; only a dependency, a cron or drift runs it."""
    for dep, run_id in deps.items():
        if record.dependencies.get(dep) != run_id:
            return _start(entry, life, deps, Trigger.DEPENDENCY, f"{dep} succeeded", salt=run_id)
    fired = cron_fired(life.schedule, record.schedule_anchor, now, life.zone)
    if fired is not None:
        return _start(entry, life, deps, Trigger.SCHEDULE, "schedule", salt=fired.isoformat())
    drift_start = _drift(entry, life, record, now)
    if drift_start is not None:
        return drift_start, None, None
    success = record.last_success.run_id if record.last_success else "the last run"
    return None, Status(phase=life.steady, message=f"{success} succeeded"), None


def _declared(
    entry: Entry,
    life: Lifecycle,
    desired: DesiredState,
    records: Mapping[EntryId, EntryRecord],
    active: Mapping[EntryId, ActiveRun],
    *,
    now: datetime,
) -> Decision:
    record = records.get(entry.id)
    running = active.get(entry.id)
    if running is not None:
        msg = f"{running.operation.value} {running.run_id} (attempt {running.attempt})"
        if running.spec_hash != entry.spec_hash and running.operation is not Operation.DRIFT:
            msg += "; the new version runs after it"
        elif _unhandled(entry, life, record):
            msg += "; the requested run starts after it"
        return None, Status(phase=Phase.RUNNING, message=msg), None
    if entry.spec.suspend:
        return None, Status(phase=Phase.SUSPENDED, message="suspend: true"), None
    deps, waiting = _dependencies(entry, desired, records, active)
    if waiting is not None:
        return None, Status(phase=Phase.BLOCKED, message=waiting), None
    requested = _requested_run(entry, life, record, deps)
    if requested is not None:
        return requested, None, None
    if record is None or not _in_force(entry, record):
        return _not_succeeded(entry, life, record, deps, now)
    return _succeeded(entry, life, record, deps, now)


def _unhandled(entry: Entry, life: Lifecycle,
               record: EntryRecord | None) -> tuple[Operation, str] | None:
    """The run a request annotation asks for and that has not been handled: its operation
    and the annotation's value. A new entry's values count as handled (its first run is its
    own, even when it waits for a slot), so only a change of a value asks."""
    if record is None or record.last_run is None:
        return None
    handled = record.requests or Requests()
    if entry.run_requested is not None and entry.run_requested != handled.run:
        return life.success, entry.run_requested
    if (life.plans is not None and entry.plan_requested is not None
            and entry.plan_requested != handled.plan):
        return life.plans, entry.plan_requested
    return None


def _requested_run(entry: Entry, life: Lifecycle, record: EntryRecord | None,
                   deps: dict[EntryId, RunId]) -> Start | None:
    """A run asked for by a request annotation: at the current version, with its attempts
    afresh (a failed task run again after a fix outside Git)."""
    asked = _unhandled(entry, life, record)
    if asked is None or record is None or record.last_run is None:
        return None
    operation, value = asked
    if operation is life.success and record.last_run.spec_hash != entry.spec_hash:
        return None  # the new version's own run answers it
    what = "plan" if operation is life.plans else "run"
    return Start(entry_id=entry.id, entry=entry, operation=operation, trigger=Trigger.REQUESTED,
                 salt=f"requested\0{value}", dependencies=deps,
                 message=f"{what} requested ({value})")


def _answered(entry: Entry, life: Lifecycle, record: EntryRecord | None,
              operation: Operation | None) -> Requests | None:
    """The request values handled once a run of `operation` starts (every run of the version
    in force answers a run request; every plan, a plan request); a new entry's values are
    handled by its first decision, whatever it is. None: nothing changes."""
    if record is None:
        if entry.run_requested is None and entry.plan_requested is None:
            return None
        return Requests(run=entry.run_requested, plan=entry.plan_requested)
    handled = record.requests or Requests()
    run = entry.run_requested if operation is life.success else handled.run
    plan = entry.plan_requested if operation is not None and operation is life.plans \
        else handled.plan
    if (run, plan) == (handled.run, handled.plan):
        return None
    return Requests(run=run, plan=plan)


def _drift(entry: Entry, life: Lifecycle, record: EntryRecord, now: datetime) -> Start | None:
    drift = record.drift
    if (
        life.remediate
        and drift is not None
        and drift.state is DriftState.DRIFTED
        and drift.run_id is not None
        and drift.remediated_by is None
    ):
        return Start(entry_id=entry.id, entry=entry, operation=life.success,
                     trigger=Trigger.REMEDIATE, salt=drift.run_id,
                     message=f"remediating drift found by {drift.run_id}")
    fired = cron_fired(life.drift, record.drift_anchor, now)
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
    # `prune` is recorded only for what the kind's lifecycle destroys on removal.
    if record.prune and record.last_success is not None:
        if not desired.clean:
            return None, Status(
                phase=Phase.ORPHANED,
                message="declaration removed; not destroyed because the commit has load errors",
            )
        attempt = last.attempt + 1 if destroying and last is not None else 1
        if attempt > DESTROY_ATTEMPTS and last is not None:
            return None, Status(phase=Phase.FAILED, message=f"destroy failed: {last.message}")
        return Start(entry_id=record.entry, entry=record.applied, operation=Operation.DESTROY,
                     trigger=Trigger.PRUNE, attempt=attempt,
                     revision=record.last_success.revision,
                     message="declaration removed with prune: true"), None
    return None, Status(phase=Phase.ORPHANED, message="declaration removed; nothing was destroyed")


def _removed(desired: DesiredState, records: Mapping[EntryId, EntryRecord]) -> list[EntryId]:
    return sorted(records.keys() - desired.entries.keys() - desired.invalid.keys())


def _removed_of(desired: DesiredState, records: Mapping[EntryId, EntryRecord],
                only: Collection[EntryId] | None) -> list[EntryId]:
    if only is None:
        return _removed(desired, records)
    return sorted(e for e in only
                  if e in records and e not in desired.entries and e not in desired.invalid)


def destroy_candidates(
    desired: DesiredState,
    records: Mapping[EntryId, EntryRecord],
    active: Mapping[EntryId, ActiveRun],
    *,
    only: Collection[EntryId] | None = None,
) -> list[EntryId]:
    """The entries `plan` would destroy now, unless `held`: what the daemon looks up in the
    commit before planning (a destroy cannot be undone). `only`: of these entries."""
    return [entry_id for entry_id in _removed_of(desired, records, only)
            if _undeclared(records[entry_id], desired, active)[0] is not None]


def _same(text: str) -> str:
    return text


class _Outcome:
    """The plan as it is built: starts in order, the slots they take, the records they change."""

    def __init__(self, records: Mapping[EntryId, EntryRecord], now: datetime,
                 free_slots: int | None) -> None:
        self._records = records
        self._now = now
        self._free = free_slots
        self.starts: list[Start] = []
        self.updates: dict[EntryId, EntryRecord] = {}
        self.waiting: set[EntryId] = set()

    def put(self, record: EntryRecord) -> None:
        old = self._records.get(record.entry)
        if record is not old and record != old:
            self.updates[record.entry] = record

    def start(self, record: EntryRecord, start: Start) -> None:
        """Start `start` if a slot is free; its record says what happened either way."""
        if self._free is not None and self._free <= 0:
            self.put(with_status(record, Phase.PENDING,
                                 f"{start.message}; waiting for a free slot"))
            self.waiting.add(start.entry_id)
            return
        request = start.request(self._now)
        self.starts.append(start)
        if request is None:
            self.put(with_status(record, Phase.FAILED, f"cannot {start.operation.value}: "
                                 f"no declaration at {start.revision}"))
            return
        if self._free is not None:
            self._free -= 1
        record = started(record, request, message=start.message,
                         dependencies=start.dependencies)
        if start.answers is not None:
            record = record.model_copy(update={"requests": start.answers})
        self.put(record)


def _record(records: Mapping[EntryId, EntryRecord], entry_id: EntryId) -> EntryRecord:
    return records.get(entry_id) or new_record(entry_id, *split_entry_id(entry_id))


def _requested(desired: DesiredState, records: Mapping[EntryId, EntryRecord],
               active: Mapping[EntryId, ActiveRun], now: datetime,
               requests: Mapping[EntryId, Operation], *, out: _Outcome) -> None:
    """Runs asked for by hand (`reconciler drift`): started now, outside every rule, unless
    not declared or already running; no other entry is looked at."""
    for entry_id, operation in sorted(requests.items()):
        entry = desired.entries.get(entry_id)
        if entry is None or entry_id in active:
            continue
        out.start(_record(records, entry_id), Start(
            entry_id=entry_id, entry=entry, operation=operation, trigger=Trigger.MANUAL,
            salt=now.isoformat(), revision=desired.revision, message="requested"))


def _plan_declared(entry: Entry, desired: DesiredState, records: Mapping[EntryId, EntryRecord],
                   active: Mapping[EntryId, ActiveRun], now: datetime, *,
                   kinds: Mapping[Kind, KindRules], redact: Callable[[str], str],
                   out: _Outcome, wakes: dict[EntryId, datetime],
                   timers: dict[EntryId, datetime]) -> None:
    """One declared entry's decision into `out`, and its timers."""
    entry_id = entry.id
    life = kinds[entry.kind].lifecycle(entry)
    start, status, wake = _declared(entry, life, desired, records, active, now=now)
    known = records.get(entry_id)
    record = declared(known or new_record(entry_id, entry.kind, entry.name),
                      entry, drift=life.drift is not None, prune=life.prune,
                      revision=desired.revision)
    if status is not None:
        record = with_status(record, status.phase, redact(status.message))
    answers = _answered(entry, life, known, start.operation if start is not None else None)
    if start is not None:
        out.start(record, start.model_copy(update={"revision": desired.revision,
                                                   "answers": answers}))
    else:
        out.put(record if answers is None else record.model_copy(update={"requests": answers}))
    fires = [wake] if wake is not None else []
    if wake is not None:
        wakes[entry_id] = wake
    if start is None:
        fires += _timers(life, record, now)
    if fires:
        timers[entry_id] = min(fires)


def plan(
    desired: DesiredState,
    records: Mapping[EntryId, EntryRecord],
    active: Mapping[EntryId, ActiveRun],
    now: datetime,
    *,
    kinds: Mapping[Kind, KindRules],
    free_slots: int | None = None,
    held: Mapping[EntryId, str] | None = None,
    requests: Mapping[EntryId, Operation] | None = None,
    only: Collection[EntryId] | None = None,
    redact: Callable[[str], str] = _same,
) -> Plan:
    """What to start now and how every record changes. `free_slots`: how many runs the
    executor can take (None: no limit); `held`: why an entry about to be destroyed is still
    named in the commit; `requests`: run these operations now and plan nothing else;
    `only`: plan these entries (declared, invalid or no longer declared) and no other, the
    caller knowing that the plan of every other one would change nothing (see
    `daemon.dirty`); `redact`: applied to the phase messages (they quote load errors and run
    output)."""
    out = _Outcome(records, now, free_slots)
    if requests is not None:
        _requested(desired, records, active, now, requests, out=out)
        return Plan(starts=tuple(out.starts), record_updates=out.updates)
    wakes: dict[EntryId, datetime] = {}
    timers: dict[EntryId, datetime] = {}
    entries = desired.entries
    declared_ids = sorted(entries) if only is None else sorted(e for e in only if e in entries)
    for entry_id in declared_ids:
        _plan_declared(entries[entry_id], desired, records, active, now, kinds=kinds,
                       redact=redact, out=out, wakes=wakes, timers=timers)
    invalid = desired.invalid
    invalid_ids = sorted(invalid) if only is None else sorted(e for e in only if e in invalid)
    for entry_id in invalid_ids:
        bad = _invalid_status(invalid[entry_id])
        out.put(with_status(_record(records, entry_id), bad.phase, redact(bad.message)))
    for entry_id in _removed_of(desired, records, only):
        record = records[entry_id]
        start, status = _undeclared(record, desired, active)
        if status is not None:
            record = with_status(record, status.phase, redact(status.message))
        reason = (held or {}).get(entry_id)
        if start is not None and reason is not None:
            out.put(with_status(record, Phase.ORPHANED, f"declaration removed; {reason}"))
        elif start is not None:
            out.start(record, start)
        else:
            out.put(record)
    return Plan(starts=tuple(out.starts), record_updates=out.updates, wakes=wakes,
                timers=timers, waiting=frozenset(out.waiting))
