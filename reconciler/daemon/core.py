"""The reconcile cycle (DESIGN §1).

One cycle = sync source → observe runs → plan → start runs → write status. The stages are small
functions run in order by `Daemon.cycle`; status is written at the end whatever happened earlier,
so a failed fetch still records finished runs. `loops` drives cycles from one worker thread;
everything else (the scheduler, webhooks, signals) only enqueues wake-ups.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loguru import logger

from reconciler import adoption
from reconciler import status as status_files
from reconciler.daemon.publisher import StatusPublisher
from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.declarations.named import refusal, still_named
from reconciler.executors.base import Executor
from reconciler.metrics import Metrics
from reconciler.plan import ActiveRun, Plan, Start, plan
from reconciler.ports import LoaderPort, SourcePort
from reconciler.records import DriftInfo, EntryRecord, fold_report, new_record
from reconciler.redact import Redactor, redactor
from reconciler.runs import RunReport, RunRequest, run_id_for
from reconciler.scheduler import jittered
from reconciler.source.signatures import CommitGate, SignatureCheck
from reconciler.types import (
    DriftState,
    EntryId,
    Kind,
    Operation,
    Phase,
    Revision,
    RunId,
    RunState,
    Trigger,
    split_entry_id,
)

FAILED_PHASES = frozenset({Phase.FAILED, Phase.TIMED_OUT, Phase.INVALID})
MAX_FETCH_BACKOFF = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class CycleResult:
    started: int = 0
    active: int = 0
    wake_at: datetime | None = None
    errors: list[str] = field(default_factory=list)


class Daemon:
    def __init__(
        self,
        *,
        source: SourcePort,
        loader: LoaderPort,
        executor: Executor,
        metrics: Metrics,
        interval: timedelta = timedelta(seconds=30),
        clock: Callable[[], datetime] = utcnow,
        redact: Redactor = redactor,
        is_leader: Callable[[], bool] = lambda: True,
        signatures: SignatureCheck | None = None,
    ) -> None:
        self.source = source
        self.loader = loader
        self.executor = executor
        self.metrics = metrics
        self.interval = interval
        self.clock = clock
        self.redact = redact
        self.is_leader = is_leader
        self.desired = DesiredState()
        self.records: dict[EntryId, EntryRecord] = {}
        self.publisher = StatusPublisher(source, redact=redact)
        self.revision: Revision | None = None
        """The commit the declarations were last loaded from."""
        self._head: Revision | None = None
        """The newest commit whose declarations are in force (differs from `revision` only by
        our own status commits when the status branch is the tracked branch)."""
        self._fetched: Revision | None = None
        """The newest commit fetched; ahead of `_head` while it has not loaded."""
        self.load_failure: LoadError | None = None
        """Why the newest commit could not be loaded, while it cannot (errors.yaml shows it)."""
        self.synced = threading.Event()
        self.unacked: set[RunId] = set()
        self.counted: set[RunId] = set()
        self._reports: list[RunReport] = []
        self._in_flight: set[RunId] = set()
        self._fetch_backoff = _Backoff(interval)
        self._load_backoff = _Backoff(interval)
        self._lock = threading.Lock()
        self._restored = False
        self._adopt_pending = False
        self._leading = False
        self._busy_since: float | None = None
        self._named: dict[EntryId, tuple[Revision, str | None]] = {}
        """Per stack about to be destroyed: the commit looked at, and what still names it."""
        self.gate = None if signatures is None or not signatures.enabled else CommitGate(
            signatures, branch=source.branch, status_branch=source.status_branch,
            metrics=metrics)
        self.refusal: status_files.CommitRefusal | None = None
        """The newest commit, when commit verification refused it."""

    # -- start ------------------------------------------------------------------------------

    def restore(self) -> None:
        """Read what already ran from the status branch: the records are the durable memory,
        so a daemon with a fresh state dir does not run everything again. Then adopt what the
        executor durably knows of the declared versions and a record lacks (the branch was
        reset while the daemon was down), so a restart never runs a success again."""
        files = self.source.read_status()
        self.records, problems = status_files.parse(files)
        for problem in problems:
            logger.warning("ignoring unreadable status file: {}", problem)
        self.publisher.restored(files, self.records)
        self._adopt_pending = True
        self._restored = True
        logger.info("restored {} status records from branch {}", len(self.records),
                    self.source.status_branch)

    def _adopt(self) -> None:
        """Fold in what the executor durably knows of the declared versions and the records
        lack (the status branch was reset while the daemon was down). Once after a restore,
        as soon as declarations are in force (it looks their versions up), and before
        anything is observed or planned from the records."""
        if not self._adopt_pending or self.revision is None:
            return
        entries = self.desired.entries.values()
        found = self.executor.latest({e.id: e.spec_hash for e in entries},
                                     adoption.shown(self.records.values()))
        self.records, adopted = adoption.adopt(
            self.records, {e.id: e.depends_on for e in entries}, found)
        self._adopt_pending = False
        for run in adopted:
            logger.bind(entry=run.entry_id, run=run.run_id).info(
                "adopted run {} ({}) from the {} executor's records: the status branch lacked it",
                run.run_id, run.state.value, self.executor.name)

    def _ensure_restored(self) -> None:
        if not self._restored:
            self.restore()

    # -- the cycle --------------------------------------------------------------------------

    def cycle(self, *, fetch: bool = True, urgent: bool = False) -> CycleResult:
        """One reconcile pass. Never raises for bad input, an unreachable remote or a failed
        run: problems are logged, counted and retried on a later cycle. `urgent` (a webhook,
        a request) fetches and loads at once, whatever the backoff after earlier failures."""
        self._busy_since = time.monotonic()
        try:
            return self._cycle(fetch=fetch, urgent=urgent)
        finally:
            self._busy_since = None

    def busy_seconds(self) -> float:
        """How long the cycle in progress has lasted (0 between cycles): the liveness probe
        fails when one never ends."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def _cycle(self, *, fetch: bool, urgent: bool) -> CycleResult:
        with self._lock:
            began = time.monotonic()
            result = CycleResult()
            leading = self.is_leader()
            if leading and not self._leading:
                # Taking over: the previous leader wrote status since this replica read it.
                self._restored = False
            self._leading = leading
            finished: list[RunReport] = []
            stages: list[Callable[[], object]] = [
                self._ensure_restored,
                lambda: self._sync_source(fetch, urgent=urgent),
                self._adopt,
                lambda: finished.extend(self._observe()),
                lambda: self._plan_and_start(result),
            ]
            for stage in stages:
                try:
                    stage()
                except Exception as err:  # the loop must outlive any stage
                    logger.opt(exception=err).error("reconcile stage failed: {}", err)
                    result.errors.append(str(err))
                    break
            if leading:
                self._write_status(finished, result)
            self._export_state(result)
            self.metrics.observe_reconcile(time.monotonic() - began)
            return result

    def _sync_source(self, fetch: bool, *, urgent: bool = False) -> None:
        """Fetch when the remote head moved; load declarations when the revision changed.
        A failed fetch or load backs off exponentially and is retried; the last declarations
        that loaded stay in force meanwhile. A commit counts as seen only once it loaded."""
        now = self.clock()
        if urgent:
            self._fetch_backoff.clear()
            self._load_backoff.clear()
        if fetch and self._fetch_backoff.ready(now):
            self._fetch(now)
        head = self._fetched
        if head is None or head == self._head or not self._load_backoff.ready(now):
            return
        previous = self._head
        try:
            if previous is None or not self.source.only_status_changed(previous, head):
                target = self._verified(head)
                if target is not None and target != self.revision:
                    self._load(target)
                if self.refusal is not None and self.refusal.result == "error":
                    return  # the verifier could not run: this head is looked at again next poll
        except Exception as err:
            self._load_failed(head, err, now)
            raise
        self._head, self.load_failure = head, None
        self._load_backoff.clear()
        self.metrics.mark_synced()
        self.synced.set()

    def _fetch(self, now: datetime) -> None:
        began = time.monotonic()
        try:
            head = self.source.head()
            if head is not None and head != self._fetched:
                head = self.source.fetch()
        except Exception:
            self.metrics.observe_fetch("error", time.monotonic() - began)
            self._fetch_backoff.failed(now)
            raise
        self.metrics.observe_fetch("success", time.monotonic() - began)
        self._fetch_backoff.clear()
        if head is None:
            raise LookupError(f"branch {self.source.branch!r} does not exist on the remote")
        if head == self._head:
            self.metrics.mark_synced()
            self.synced.set()
        self._fetched = head

    def _load_failed(self, head: Revision, err: Exception, now: datetime) -> None:
        """Whatever broke the load (the loader reports bad files as errors, so this is a
        fault of ours or of the object database), the commit is not taken as seen: it is
        loaded again after a backoff, and errors.yaml says why until it loads."""
        self.metrics.observe_load("error")
        retry_at = self._load_backoff.failed(now)
        in_force = f"{self.revision[:12]} stay in force" if self.revision else "none are in force"
        self.load_failure = LoadError(
            location=Location(path="."),
            message=self.redact(
                f"commit {head[:12]} could not be loaded ({type(err).__name__}: {err}); "
                f"the declarations of {in_force}; retrying at {retry_at:%Y-%m-%dT%H:%M:%SZ}"),
        )

    def _verified(self, head: Revision) -> Revision | None:
        """The commit whose declarations are in force for `head`: itself, unless commit
        verification refuses it; then the last verified commit, or None (`source.signatures`)."""
        if self.gate is None:
            self.metrics.set_head(self.source.branch, head, "none")
            return head
        decision = self.gate.decide(head, self.source.signed_commit)
        verdict = decision.verdict
        self.refusal = None if verdict.verified else status_files.CommitRefusal(
            commit=head, branch=self.source.branch, result=verdict.result,
            reason=self.redact(verdict.reason), in_force=decision.in_force)
        return decision.in_force

    def _load(self, revision: Revision) -> None:
        desired = self.loader.load(self.source.files(revision), revision=revision)
        self.metrics.observe_load("success")
        try:
            self.loader.save_cache()
        except OSError as err:  # only a cache: the next restart parses again
            logger.warning("cannot save the declarations cache: {}", err)
        self.desired, self.revision = desired, revision
        self.executor.expect(list(desired.entries.values()))
        self.metrics.set_revision(self.source.branch, revision)
        counts: dict[tuple[Kind | str, bool], int] = {}
        for entry in desired.entries.values():
            counts[(entry.kind, True)] = counts.get((entry.kind, True), 0) + 1
        for entry_id in desired.invalid:
            kind = split_entry_id(entry_id)[0]
            counts[(kind, False)] = counts.get((kind, False), 0) + 1
        if desired.files_with_errors:
            # Files whose entries could not even be named (a YAML syntax error): counted
            # apart, so an alert can say "unreadable" rather than point at no entry.
            counts[("unknown", False)] = len(desired.files_with_errors)
        self.metrics.set_declarations(counts)
        logger.info("loaded {} entries at {} ({} errors)", len(desired.entries), revision[:12],
                    len(desired.errors))
        for error in desired.errors:
            logger.warning("invalid declaration: {}", error)

    def _observe(self) -> list[RunReport]:
        """Fold every run the executor reports into its entry's record."""
        self._reports = sorted(self.executor.poll(),
                               key=lambda r: r.started_at or datetime.min.replace(tzinfo=UTC))
        self._in_flight = {r.run_id for r in self._reports if not r.state.finished}
        finished = []
        for report in self._reports:
            record = self.records.get(report.entry_id) or new_record(
                report.entry_id, *split_entry_id(report.entry_id))
            if not _is_stale(record, report):
                self.records[report.entry_id] = fold_report(record, report)
            if report.state.finished:
                finished.append(report)
                self._count_finished(report)
        return finished

    def _count_finished(self, report: RunReport) -> None:
        if report.run_id in self.counted:
            return
        self.counted.add(report.run_id)
        kind = split_entry_id(report.entry_id)[0]
        seconds = None
        if report.started_at and report.finished_at:
            seconds = (report.finished_at - report.started_at).total_seconds()
        self.metrics.run_finished(kind, report.trigger, report.state, seconds)
        if report.operation is Operation.DRIFT:
            record = self.records[report.entry_id]
            state = record.drift.state if record.drift else DriftState.ERROR
            self.metrics.observe_drift_check(state)
        log = logger.bind(entry=report.entry_id, run=report.run_id)
        log.info("run {} {} ({}, attempt {}){}", report.run_id, report.state.value,
                 report.operation.value, report.attempt,
                 f": {report.message}" if report.message else "")

    def _plan_and_start(self, result: CycleResult) -> None:
        active = {r.entry_id: ActiveRun(run_id=r.run_id, operation=r.operation,
                                        spec_hash=r.spec_hash, attempt=r.attempt)
                  for r in self._reports if not r.state.finished}
        if not self._leading or self.revision is None:
            result.active = len(active)
            return
        now = self.clock()
        decided = plan(self.desired, self.records, active, now)
        self._apply_statuses(decided)
        for start in decided.starts:
            if self._start(start, now) is not None:
                result.started += 1
        result.active = len(active) + result.started
        result.wake_at = decided.wake_at

    def _apply_statuses(self, decided: Plan) -> None:
        for entry in self.desired.entries.values():
            self._declared_record(entry)
        for entry_id in self.desired.invalid:
            if entry_id not in self.records:
                self.records[entry_id] = new_record(entry_id, *split_entry_id(entry_id))
        for entry_id, status in decided.statuses.items():
            record = self.records.get(entry_id)
            message = self.redact(status.message)
            if record is not None and (record.phase, record.message) != (status.phase, message):
                self.records[entry_id] = record.model_copy(
                    update={"phase": status.phase, "message": message})

    def _declared_record(self, entry: Entry) -> None:
        record = self.records.get(entry.id) or new_record(entry.id, entry.kind, entry.name)
        drift = record.drift
        if drift is None and entry.kind is Kind.STACK and entry.stack.drift.schedule:
            drift = DriftInfo()  # Unknown until the first check
        changed = record.spec_hash != entry.spec_hash
        update = {
            "drift": drift,
            "spec_hash": entry.spec_hash,
            "commit": self.revision if changed or record.commit is None else record.commit,
            "source": f"{entry.location.path}:{entry.location.line}",
            # A plan-only stack has applied nothing, so there is nothing of it to destroy.
            "prune": entry.kind is Kind.STACK and entry.stack.prune
            and entry.stack.apply == "auto",
        }
        if any(getattr(record, key) != value for key, value in update.items()):
            self.records[entry.id] = record.model_copy(update=update)

    def _start(self, start: Start, now: datetime) -> RunId | None:
        """Submit one planned run; returns its id, or None when it could not start now."""
        record = self.records.get(start.entry_id) or new_record(
            start.entry_id, *split_entry_id(start.entry_id))
        named = self._still_named(start) if start.operation is Operation.DESTROY else None
        if named is not None:
            self.records[start.entry_id] = record.model_copy(update={
                "phase": Phase.ORPHANED, "message": f"declaration removed; {named}"})
            return None
        if self.executor.free_slots() <= 0:
            self.records[start.entry_id] = record.model_copy(update={
                "phase": Phase.PENDING, "message": f"{start.message}; waiting for a free slot"})
            return None
        entry = start.entry or self._entry_at(start.entry_id, start.revision)
        if entry is None:
            self.records[start.entry_id] = record.model_copy(update={
                "phase": Phase.FAILED,
                "message": f"cannot {start.operation.value}: no declaration at {start.revision}"})
            return None
        revision = start.revision or self.revision
        assert revision is not None
        request = RunRequest(
            run_id=run_id_for(entry, start.operation, start.attempt, salt=start.salt),
            entry=entry, operation=start.operation, trigger=start.trigger,
            attempt=start.attempt, revision=revision, requested_at=now)
        # Said before submitting: an executor that cannot start the run says so while submitting.
        logger.bind(entry=entry.id, run=request.run_id).info(
            "starting {} {} ({}: {})", start.operation.value, request.run_id,
            start.trigger.value, start.message)
        self.executor.submit(request)
        self._in_flight.add(request.run_id)
        pending = RunReport(
            run_id=request.run_id, entry_id=entry.id, spec_hash=entry.spec_hash,
            operation=start.operation, trigger=start.trigger, attempt=start.attempt,
            revision=revision, state=RunState.PENDING, started_at=now)
        updates: dict[str, object] = {"phase": Phase.RUNNING, "message": start.message}
        if start.operation is Operation.DRIFT:
            updates["drift_anchor"] = now
        else:
            updates.update(schedule_anchor=now, drift_anchor=now,
                           dependencies=dict(start.dependencies))
        self.records[start.entry_id] = fold_report(record, pending).model_copy(update=updates)
        return request.run_id

    def _still_named(self, start: Start) -> str | None:
        """Why a stack about to be destroyed is not gone after all, or None: a destroy cannot
        be undone, so any YAML document anywhere in the commit that still names the stack
        (misspelt out of being a declaration, in a file that does not parse, under another
        apiVersion) holds it back. Looked up once per commit."""
        if self.revision is None:
            return "not destroyed: no commit is loaded"
        cached = self._named.get(start.entry_id)
        if cached is None or cached[0] != self.revision:
            name = split_entry_id(start.entry_id)[1]
            found = still_named(self.source.files(self.revision), ".", [name]).get(name)
            cached = (self.revision, refusal(found) if found is not None else None)
            self._named[start.entry_id] = cached
            if found is not None:
                logger.bind(entry=start.entry_id).warning("{} {}", start.entry_id, cached[1])
        return cached[1]

    def _entry_at(self, entry_id: EntryId, revision: Revision | None) -> Entry | None:
        """The declaration of a removed entry as of the commit it was last applied at."""
        if revision is None:
            return None
        try:
            old = self.loader.load(self.source.files(revision), revision=revision)
        except Exception as err:  # reported on the entry
            logger.error("cannot load {} at {}: {}", entry_id, revision[:12], err)
            return None
        return old.entries.get(entry_id)

    def _write_status(self, finished: list[RunReport], result: CycleResult) -> None:
        """One status commit for everything this cycle changed; none when nothing did. Finished
        runs are acknowledged to the executor only once their status is pushed."""
        self.unacked.update(r.run_id for r in finished)
        if not self._restored or (self.revision is None and not self.records
                                  and self.refusal is None):
            return  # never overwrite status files that could not be read first
        errors = self.desired.errors
        if self.load_failure is not None:
            errors = (self.load_failure, *errors)
        try:
            if self.publisher.publish(self.records, errors, revision=self.revision,
                                      refusal=self.refusal, finished=finished,
                                      started=result.started):
                self.metrics.observe_status_push("success")
        except Exception as err:  # kept, pushed next cycle
            self.metrics.observe_status_push("error")
            logger.error("status push failed (kept for the next cycle): {}", err)
            result.errors.append(f"status push failed: {err}")
            return
        if self.unacked:
            self.executor.acknowledge(sorted(self.unacked))
            self.counted -= self.unacked
            self.unacked.clear()

    def _export_state(self, result: CycleResult) -> None:
        self.metrics.set_entry_phases({(r.kind, r.name): r.phase for r in self.records.values()})
        active: dict[Kind, int] = {}
        for r in self.records.values():
            if r.last_run is not None and r.last_run.id in self._in_flight:
                active[r.kind] = active.get(r.kind, 0) + 1
        self.metrics.set_runs_active(active)
        self.metrics.set_drift({
            r.name: (r.drift.state, r.drift.first_detected_at)
            for r in self.records.values() if r.kind is Kind.STACK and r.drift is not None
            and r.entry in self.desired.entries
        })

    # -- results and one-off runs -----------------------------------------------------------

    def exit_code(self) -> int:
        failed = [r for r in self.records.values()
                  if r.phase in FAILED_PHASES and r.entry in self._current_ids()]
        return 1 if failed or self.desired.errors or self.refusal else 0

    def _current_ids(self) -> set[EntryId]:
        return set(self.desired.entries) | set(self.desired.invalid)

    def run_now(self, entry_id: EntryId, operation: Operation, *, stop: threading.Event,
                poll_seconds: float = 0.2) -> EntryRecord:
        """Run one operation of one entry now, outside its schedule, wait for it and write its
        status; nothing else is started (`reconciler drift`)."""
        with self._lock:
            self._leading = True
            self._ensure_restored()
            self._sync_source(True)
            self._adopt()
            finished = self._observe()
            entry = self.desired.entries.get(entry_id)
            if entry is None:
                raise LookupError(f"{entry_id} is not declared (or invalid) at "
                                  f"{(self.revision or 'the newest commit')[:12]}")
            if any(r.entry_id == entry_id for r in self._reports if not r.state.finished):
                raise RuntimeError(f"a run of {entry_id} is in flight; try again when it ends")
            now = self.clock()
            start = Start(entry_id=entry_id, entry=entry, operation=operation,
                          trigger=Trigger.MANUAL, salt=now.isoformat(), message="requested")
            run_id = self._start(start, now)
            if run_id is None:
                raise RuntimeError(self.records[entry_id].message)
            self._write_status(finished, CycleResult(started=1))
        while not stop.wait(poll_seconds):
            with self._lock:
                finished = self._observe()
                self._write_status(finished, CycleResult())
                if run_id not in self._in_flight:
                    break
        return self.records[entry_id]


class _Backoff:
    """Exponential backoff with jitter after consecutive failures, capped at five minutes."""

    def __init__(self, interval: timedelta) -> None:
        self._interval = interval
        self._failures = 0
        self._next: datetime | None = None

    def ready(self, now: datetime) -> bool:
        return self._next is None or now >= self._next

    def failed(self, now: datetime) -> datetime:
        """Count a failure; when to try again."""
        self._failures += 1
        delay = min(self._interval * 2 ** min(self._failures - 1, 30), MAX_FETCH_BACKOFF)
        self._next = now + timedelta(seconds=jittered(delay.total_seconds()))
        return self._next

    def clear(self) -> None:
        self._failures, self._next = 0, None


def _is_stale(record: EntryRecord, report: RunReport) -> bool:
    """A report of a run older than the one the record already shows (an unacknowledged run
    reported again after a newer one started) must not roll the record back."""
    last = record.drift if report.operation is Operation.DRIFT else record.last_run
    if last is None:
        return False
    last_id = last.run_id if isinstance(last, DriftInfo) else last.id
    started = last.checked_at if isinstance(last, DriftInfo) else last.started_at
    return (last_id is not None and last_id != report.run_id and started is not None
            and report.started_at is not None and report.started_at < started)
