"""The reconcile cycle (DESIGN §1).

One cycle = restore → sync source → adopt → observe runs → recall → guard → plan → start runs,
then write status and export metrics whatever happened earlier, so a failed fetch still
records finished runs. Each stage is a method with the one signature of `cycle.Stage`; what
they hand each other travels in the `Cycle`. Every decision, and every change to a record, is
`plan`'s (and `records`'): the stages gather its inputs, store what it returns and carry out
its starts. `loops` drives cycles from one worker thread; everything else (the scheduler,
webhooks, signals) only enqueues wake-ups.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loguru import logger

from reconciler import adoption
from reconciler import status as status_files
from reconciler.daemon import cycle as cycles
from reconciler.daemon.cycle import Cycle, CycleResult, Stage
from reconciler.daemon.dirty import Planned
from reconciler.daemon.guard import DestroyGuard
from reconciler.daemon.publisher import StatusPublisher
from reconciler.daemon.statuscache import StatusCache
from reconciler.daemon.sync import SourceSync
from reconciler.declarations.entries import DesiredState, Entry, LoadError
from reconciler.executors.base import Executor
from reconciler.http.api import InFlight
from reconciler.kinds.base import registry
from reconciler.metrics import Metrics
from reconciler.plan import ActiveRun, Plan, destroy_candidates, plan
from reconciler.ports import LoaderPort, SourcePort
from reconciler.records import EntryRecord, new_record, observed, with_applied
from reconciler.redact import Redactor, redactor
from reconciler.runs import RunReport
from reconciler.source.signatures import SignatureCheck
from reconciler.types import (
    DriftState,
    EntryId,
    Kind,
    Operation,
    Phase,
    Revision,
    RunId,
    split_entry_id,
)

FAILED_PHASES = frozenset({Phase.FAILED, Phase.TIMED_OUT, Phase.INVALID})


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


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
        state_dir: Path | None = None,
    ) -> None:
        self.source = source
        self.executor = executor
        self.metrics = metrics
        self.interval = interval
        self.clock = clock
        self.redact = redact
        self.is_leader = is_leader
        self.records: dict[EntryId, EntryRecord] = {}
        self.publisher = StatusPublisher(source, redact=redact)
        self.status_cache = StatusCache(state_dir / "status.snapshot" if state_dir else None)
        self.tracking = SourceSync(source=source, loader=loader, metrics=metrics,
                                   interval=interval, redact=redact, signatures=signatures,
                                   expect=self._expect)
        self.guard = DestroyGuard(source)
        self.unacked: set[RunId] = set()
        self.counted: set[RunId] = set()
        self._in_flight: set[RunId] = set()
        self._lock = threading.Lock()
        self._restored = False
        self._adopt_pending = False
        self._leading = False
        self._busy_since: float | None = None
        self._planned: Planned | None = None
        """What the last plan read and decided: the next plans only the entries it must."""
        self._exported: dict[EntryId, EntryRecord] = {}
        """The records as the metrics last showed them."""
        self._exported_declared: dict[EntryId, Entry] = {}
        self._exported_active: dict[EntryId, Kind] = {}
        """The entries whose run was in flight, as the metrics last counted them."""
        self.stages: tuple[Stage, ...] = (
            self._restore, self._sync_source, self._adopt, self._observe, self._recall,
            self._guard, self._plan, self._start)
        self.closing: tuple[Stage, ...] = (self._write_status, self._export_state)
        self.watching: tuple[Stage, ...] = (self._observe,)
        """While `run_now` waits for its run: the runs observed, their status written."""

    # -- what the source holds --------------------------------------------------------------

    @property
    def loader(self) -> LoaderPort:
        return self.tracking.loader

    @loader.setter
    def loader(self, loader: LoaderPort) -> None:
        self.tracking.loader = loader

    def _expect(self, entries: Sequence[Entry]) -> None:
        """Newly loaded entries, told to whichever executor is in use then."""
        self.executor.expect(entries)

    @property
    def desired(self) -> DesiredState:
        return self.tracking.desired

    @property
    def revision(self) -> Revision | None:
        """The commit the declarations were last loaded from."""
        return self.tracking.revision

    @property
    def load_failure(self) -> LoadError | None:
        return self.tracking.load_failure

    @property
    def refusal(self) -> status_files.CommitRefusal | None:
        return self.tracking.refusal

    @property
    def synced(self) -> threading.Event:
        return self.tracking.synced

    # -- start ------------------------------------------------------------------------------

    def restore(self) -> None:
        """Read what already ran from the status branch: the records are the durable memory,
        so a daemon with a fresh state dir does not run everything again. Then adopt what the
        executor durably knows of the declared versions and a record lacks (the branch was
        reset while the daemon was down), so a restart never runs a success again."""
        files = self.source.read_status()
        self.records, problems = self.status_cache.parse(files)
        for problem in problems:
            logger.warning("ignoring unreadable status file: {}", problem)
        self.publisher.restored(files, self.records)
        self._adopt_pending = True
        self._restored = True
        logger.info("restored {} status records from branch {}", len(self.records),
                    self.source.status_branch)

    # -- the cycle --------------------------------------------------------------------------

    def cycle(self, *, fetch: bool = True, urgent: bool = False) -> CycleResult:
        """One reconcile pass. Never raises for bad input, an unreachable remote or a failed
        run: problems are logged, counted and retried on a later cycle. `urgent` (a webhook,
        a request) fetches and loads at once, whatever the backoff after earlier failures."""
        self._busy_since = time.monotonic()
        try:
            with self._lock:
                began = time.monotonic()
                leading = self.is_leader()
                if leading and not self._leading:
                    # Taking over: the previous leader wrote status since this replica read it.
                    self._restored = False
                self._leading = leading
                done = cycles.run(Cycle(fetch=fetch, urgent=urgent, leading=leading),
                                  self.stages, self.closing)
                self.metrics.observe_reconcile(time.monotonic() - began)
                return done.result
        finally:
            self._busy_since = None

    def busy_seconds(self) -> float:
        """How long the cycle in progress has lasted (0 between cycles): the liveness probe
        fails when one never ends."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def _restore(self, cycle: Cycle) -> None:
        """Records: read back from the status branch once, and again on taking over. In the
        cycles after, what a restart reads instead is saved (not on the way to a first plan)."""
        if not self._restored:
            self.restore()
            return
        self.status_cache.save()
        self.tracking.save_snapshot()

    def _sync_source(self, cycle: Cycle) -> None:
        """Declarations: the newest commit's, once fetched, verified and loaded."""
        self.tracking.sync(self.clock(), fetch=cycle.fetch, urgent=cycle.urgent)

    def _adopt(self, cycle: Cycle) -> None:
        """Records: what the executor durably knows of the declared versions and the records
        lack (the status branch was reset while the daemon was down) is folded in. Once after
        a restore, as soon as declarations are in force (it looks their versions up), and
        before anything is observed or planned from the records."""
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

    def _observe(self, cycle: Cycle) -> None:
        """Records: every run the executor reports is folded into its entry's record; the
        runs in flight and the ones finished are kept for the stages after."""
        cycle.reports = sorted(self.executor.poll(),
                               key=lambda r: r.started_at or datetime.min.replace(tzinfo=UTC))
        self._in_flight = {r.run_id for r in cycle.reports if not r.state.finished}
        cycle.active = {r.entry_id: ActiveRun(run_id=r.run_id, operation=r.operation,
                                              spec_hash=r.spec_hash, attempt=r.attempt)
                        for r in cycle.reports if not r.state.finished}
        cycle.finished = []
        for report in cycle.reports:
            record = self.records.get(report.entry_id) or new_record(
                report.entry_id, *split_entry_id(report.entry_id))
            self.records[report.entry_id] = observed(record, report)
            if report.state.finished:
                cycle.finished.append(report)
                self._count_finished(report)

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

    def _candidates(self, cycle: Cycle) -> list[EntryId]:
        """The entries plan would destroy: looked up once a cycle, for recall and the guard
        (recalling a declaration does not change which they are). After the first plan only
        the entries whose inputs changed are looked at again (`Cycle.changed`)."""
        if cycle.candidates is None:
            wanted = cycle.leading and self.revision is not None and cycle.requests is None
            planned = self._planned
            if not wanted:
                cycle.candidates = []
            elif planned is None:
                cycle.candidates = destroy_candidates(self.desired, self.records, cycle.active)
            else:
                cycle.changed = planned.changed(self.desired, self.records, cycle.active)
                cycle.candidates = planned.destroy_candidates(cycle.changed, destroy_candidates(
                    self.desired, self.records, cycle.active, only=cycle.changed))
        return cycle.candidates

    def _recall(self, cycle: Cycle) -> None:
        """Records: an entry about to be destroyed whose record was read back from the status
        branch (the daemon restarted after its declaration was removed) gets the declaration
        of its version in force from the commit that version was applied at. Once per record:
        from then on the record holds it."""
        wanted = [e for e in self._candidates(cycle) if self.records[e].applied is None]
        by_commit: dict[Revision, list[EntryId]] = {}
        for entry_id in wanted:
            success = self.records[entry_id].last_success
            if success is not None:
                by_commit.setdefault(success.revision, []).append(entry_id)
        for revision, entry_ids in sorted(by_commit.items()):
            try:
                old = self.loader.load(self.source.files(revision), revision=revision)
            except Exception as err:  # plan records that it cannot destroy; tried next cycle
                logger.error("cannot load {} at {}: {}", ", ".join(entry_ids), revision[:12],
                             err)
                continue
            for entry_id in entry_ids:
                self.records[entry_id] = with_applied(self.records[entry_id],
                                                      old.entries.get(entry_id))
                if cycle.changed is not None:
                    cycle.changed.add(entry_id)

    def _guard(self, cycle: Cycle) -> None:
        """Plan input `held`: what in the commit still names an entry about to be destroyed."""
        candidates = self._candidates(cycle)
        if candidates and self.revision is not None:
            cycle.held = self.guard.held(self.revision, candidates)

    def _plan(self, cycle: Cycle) -> None:
        """Records: every update plan returns, but those of the runs it starts (stored once
        each is submitted). Plan is asked of the entries whose inputs changed or whose time
        has come (`dirty`), of all of them the first time."""
        if not cycle.leading or self.revision is None:
            return
        now = self.clock()
        cycle.now = now
        planned = self._planned
        only, free = None, None
        if cycle.requests is None and planned is not None:
            self._candidates(cycle)
            assert cycle.changed is not None
            if planned.waiting:  # which of them may start now
                free = self.executor.free_slots()
            only = planned.to_plan(cycle.changed, cycle.held, now, free_slots=free or 0)
            if not only:
                cycle.plan = Plan()
                return
        kinds = registry()
        decided = plan(self.desired, self.records, cycle.active, now, kinds=kinds,
                       free_slots=free, held=cycle.held, requests=cycle.requests, only=only,
                       redact=self.redact)
        if decided.starts and free is None:
            # Asked only when something would start: with fewer slots than starts, plan
            # again knowing how many there are (it says which wait).
            free = self.executor.free_slots()
            if free < len(decided.starts):
                decided = plan(self.desired, self.records, cycle.active, now, kinds=kinds,
                               free_slots=free, held=cycle.held, requests=cycle.requests,
                               only=only, redact=self.redact)
        cycle.plan = decided
        if cycle.requests is None:
            candidates = self._candidates(cycle)
            if planned is None or only is None:
                self._planned = Planned(self.desired, self.records, active=cycle.active,
                                        held=cycle.held, decided=decided, candidates=candidates)
            else:
                planned.planned(self.desired, self.records, active=cycle.active,
                                held=cycle.held, decided=decided, only=only,
                                candidates=candidates)
        starting = {s.entry_id for s in decided.starts}
        self.records.update((entry_id, record) for entry_id, record
                            in decided.record_updates.items() if entry_id not in starting)

    def _start(self, cycle: Cycle) -> None:
        """Runs: every start of the plan is submitted, and its record stored."""
        decided = cycle.plan
        if decided is None or cycle.now is None:
            cycle.result.active = len(cycle.active)
            return
        for start in decided.starts:
            request = start.request(cycle.now)
            if request is not None:
                # Said before submitting: an executor that cannot start the run says so then.
                logger.bind(entry=start.entry_id, run=request.run_id).info(
                    "starting {} {} ({}: {})", start.operation.value, request.run_id,
                    start.trigger.value, start.message)
                self.executor.submit(request)
                self._in_flight.add(request.run_id)
                cycle.submitted.append(request.run_id)
            if start.entry_id in decided.record_updates:
                self.records[start.entry_id] = decided.record_updates[start.entry_id]
        self.executor.flush()
        cycle.result.started = len(cycle.submitted)
        cycle.result.active = len(cycle.active) + cycle.result.started
        planned = self._planned
        cycle.result.wake_at = planned.wake_at if planned is not None else decided.wake_at

    def _write_status(self, cycle: Cycle) -> None:
        """Status branch: one commit for everything this cycle changed; none when nothing
        did, and none yet while runs are in flight and the last commit is under a second old
        (`publisher`: the next commit, a cycle then at the latest, holds it). Finished runs
        are acknowledged to the executor only once their status is pushed. A request that
        started nothing writes nothing."""
        if not cycle.leading or (cycle.requests is not None and not cycle.submitted):
            return
        self.unacked.update(r.run_id for r in cycle.finished)
        if not self._restored or (self.revision is None and not self.records
                                  and self.refusal is None):
            return  # never overwrite status files that could not be read first
        errors = self.desired.errors
        if self.load_failure is not None:
            errors = (self.load_failure, *errors)
        destroying = cycle.plan is not None and any(
            s.operation is Operation.DESTROY for s in cycle.plan.starts)
        try:
            if self.publisher.publish(self.records, errors, revision=self.revision,
                                      refusal=self.refusal, finished=cycle.finished,
                                      started=cycle.result.started, busy=bool(self._in_flight),
                                      destroying=destroying):
                self.metrics.observe_status_push("success")
        except Exception as err:  # kept, pushed next cycle
            self.metrics.observe_status_push("error")
            logger.error("status push failed (kept for the next cycle): {}", err)
            cycle.result.errors.append(f"status push failed: {err}")
            return
        if self.publisher.holding:
            # The daemon's clock counts whole seconds: a second more is never early.
            due = self.clock() + timedelta(seconds=self.publisher.due_in() + 1)
            wake = cycle.result.wake_at
            cycle.result.wake_at = due if wake is None else min(wake, due)
            return
        if self.unacked:
            self.executor.acknowledge(sorted(self.unacked))
            self.counted -= self.unacked
            self.unacked.clear()

    def flush_status(self) -> None:
        """Before the daemon stops (SIGTERM, the end of `--once` or of `run_now`): a status
        commit held back while runs were in flight is made now."""
        with self._lock:
            if self.publisher.holding:
                self.publisher.release()
                self._write_status(Cycle(fetch=False, leading=self._leading))

    def _export_state(self, cycle: Cycle) -> None:
        """Metrics: entry phases, runs in flight, drift; written again only for the entries
        whose record or declaration changed since the last export (and for the runs in flight
        then and now)."""
        records, declared = self.records, self.desired.entries
        before, was_declared = self._exported, self._exported_declared
        # Comparing first is cheaper than the walk in a cycle that changed nothing.
        changed = set() if before == records else status_files.changed_entries(before, records)
        if declared is not was_declared:
            changed |= status_files.changed_entries(was_declared, declared)
        active = self._exported_active
        if changed:
            keys = {(r.kind, r.name) for e in changed
                    for r in (before.get(e), records.get(e)) if r is not None}
            self.metrics.set_entry_phases({(r.kind, r.name): r.phase for e in changed
                                           if (r := records.get(e)) is not None}, only=keys)
            stacks = {k[1] for k in keys if k[0] is Kind.STACK}
            self.metrics.set_drift({
                r.name: (r.drift.state, r.drift.first_detected_at) for e in changed
                if (r := records.get(e)) is not None and r.kind is Kind.STACK
                and r.drift is not None and e in declared}, only=stacks)
        for entry_id in changed | active.keys():
            r = records.get(entry_id)
            if r is not None and r.last_run is not None and r.last_run.id in self._in_flight:
                active[entry_id] = r.kind
            else:
                active.pop(entry_id, None)
        counts: dict[Kind, int] = {}
        for kind in active.values():
            counts[kind] = counts.get(kind, 0) + 1
        self.metrics.set_runs_active(counts)
        if changed:
            self._exported = dict(records)  # in the order of `records`: the next walk is fast
        self._exported_declared = declared

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
        status; nothing else is started (`reconciler drift`). The cycle's own stages, with
        plan asked for this run only."""
        with self._lock:
            self._leading = True
        run_id = self.request(entry_id, operation)
        while not stop.wait(poll_seconds):
            with self._lock:
                cycles.run(Cycle(fetch=False, leading=True), self.watching,
                           (self._write_status,))
                if run_id not in self._in_flight:
                    break
        self.flush_status()
        return self.records[entry_id]

    def request(self, entry_id: EntryId, operation: Operation) -> RunId:
        """Start one operation of one entry now, outside its schedule, and return its run id
        without waiting for it (the control API; `run_now`). Raises LookupError when the entry
        is not declared, RuntimeError when a run of it is in flight or it cannot start."""
        with self._lock:
            done = cycles.run(Cycle(leading=self._leading, requests={entry_id: operation}),
                              self.stages, self.closing)
            if done.failure is not None:
                raise done.failure
            if not done.submitted:
                raise self._not_started(entry_id, done)
            return done.submitted[0]

    def in_flight(self, run_id: RunId) -> bool:
        return run_id in self._in_flight

    def _not_started(self, entry_id: EntryId, done: Cycle) -> Exception:
        if entry_id not in self.desired.entries:
            return LookupError(f"{entry_id} is not declared (or invalid) at "
                               f"{(self.revision or 'the newest commit')[:12]}")
        if entry_id in done.active:
            return InFlight(f"a run of {entry_id} is in flight; try again when it ends")
        return RuntimeError(self.records[entry_id].message)
