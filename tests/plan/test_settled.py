"""The daemon skips planning when nothing plan reads changed and the time is before the plan's
`changes_at`. The full plan is the reference: over random histories, a plan that has reached
a fixed point (no start, no record change) decides exactly the same at any later time before
`changes_at`, which is what makes the skip safe."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.daemon.dirty import Planned
from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.plan import ActiveRun, Plan, destroy_candidates, plan
from reconciler.records import DriftInfo, EntryRecord, observed
from reconciler.runs import RunReport, StackResult
from reconciler.types import DriftState, EntryId, Operation, Revision, RunId, RunState
from tests.plan.test_plan import KINDS, NOW, desired, record, run, stack, task

CRONS = [None, "*/5 * * * *", "0 * * * *", "30 2 * * *"]
STATES = [RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT, RunState.INTERRUPTED]


@st.composite
def histories(draw: Any) -> tuple[DesiredState, dict[EntryId, EntryRecord]]:
    entries: list[Entry] = []
    recs: list[EntryRecord] = []
    for n in range(draw(st.integers(1, 6))):
        name = f"e{n}"
        earlier = [e.id for e in entries]
        deps = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True)) if earlier else []
        if draw(st.booleans()):
            entry = task(name, f"h{draw(st.integers(0, 1))}", schedule=draw(st.sampled_from(CRONS)),
                         retries=draw(st.integers(0, 3)), suspend=draw(st.booleans()),
                         depends_on=deps)
        else:
            entry = stack(name, f"h{draw(st.integers(0, 1))}", depends_on=deps, drift={
                "schedule": draw(st.sampled_from(CRONS)), "remediate": draw(st.booleans())})
        entries.append(entry)
        if draw(st.booleans()):
            continue  # never ran
        ago = timedelta(seconds=draw(st.integers(1, 7200)))
        last = run(f"h{draw(st.integers(0, 1))}", draw(st.sampled_from(STATES)),
                   attempt=draw(st.integers(1, 4)), ago=ago, run_id=f"r{n}")
        extra: dict[str, Any] = {}
        if draw(st.booleans()):
            extra["schedule_anchor"] = NOW - ago - timedelta(seconds=draw(st.integers(0, 3600)))
            extra["drift_anchor"] = extra["schedule_anchor"]
        if entry.kind.value == "Stack" and draw(st.booleans()):
            extra["drift"] = DriftInfo(state=draw(st.sampled_from(list(DriftState))),
                                       run_id=RunId(f"d{n}"), checked_at=NOW - ago)
        success = last.spec_hash if last.state is RunState.SUCCEEDED else None
        recs.append(record(entry, last_run=last, success=success, **extra))
    return desired(*entries), {r.entry: r for r in recs}


def settle(state: DesiredState, recs: dict[EntryId, EntryRecord],
           active: dict[EntryId, ActiveRun]) -> Plan | None:
    """Plan and apply until a plan changes nothing, as cycles would (a start becomes a run in
    flight); None when it does not settle within a few cycles."""
    for _ in range(8):
        decided = plan(state, recs, active, NOW, kinds=KINDS)
        if not decided.starts and not decided.record_updates:
            return decided
        recs.update(decided.record_updates)
        for start in decided.starts:
            version = start.entry.spec_hash if start.entry else recs[start.entry_id].spec_hash
            active[start.entry_id] = ActiveRun(run_id=RunId(f"run-{start.entry_id}"),
                                               operation=start.operation, spec_hash=version,
                                               attempt=start.attempt)
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), later=st.integers(0, 3 * 86400))
def test_a_settled_plan_decides_the_same_until_changes_at(history: Any, later: int) -> None:
    state, recs = history
    active: dict[EntryId, ActiveRun] = {}
    settled = settle(state, recs, active)
    if settled is None:
        return
    when = NOW + timedelta(seconds=later)
    again = plan(state, recs, active, when, kinds=KINDS)
    if settled.changes_at is None or when < settled.changes_at:
        assert not again.starts, settled.changes_at
        assert not again.record_updates, settled.changes_at
        assert again.wake_at == settled.wake_at


def test_changes_at_is_the_next_cron_fire_of_a_settled_scheduled_task() -> None:
    nightly = task("nightly", schedule="30 2 * * *")
    ran = run("h1", RunState.SUCCEEDED, run_id="r1")
    recs = {nightly.id: record(nightly, last_run=ran, success="h1",
                               schedule_anchor=NOW - timedelta(hours=1))}
    state = desired(nightly)
    settled = settle(state, recs, {})
    assert settled is not None
    assert settled.changes_at == (NOW + timedelta(days=1)).replace(hour=2, minute=30)
    fired = plan(state, recs, {}, settled.changes_at, kinds=KINDS)
    assert [s.operation for s in fired.starts] == [Operation.RUN]


# --- the incremental plan ----------------------------------------------------------------
#
# A history of cycles as the daemon runs them: declarations edited, removed, made invalid or
# declared again; runs ending; the clock moving; free slots, `held` and unreadable files
# changing. At every cycle the entries `daemon.dirty` says to plan are planned alone, and the
# result must be the full plan's: the same starts, the same record updates, the same entries
# waiting for a slot, and, once merged, the same wake-up and next change.

NAMES = [f"e{n}" for n in range(4)]
ENDINGS = [RunState.SUCCEEDED, RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT,
           RunState.INTERRUPTED]


@st.composite
def declarations(draw: Any, name: str, index: int) -> Entry:
    """A version of the entry `name`: what a person could declare for it."""
    deps = draw(st.lists(st.sampled_from(NAMES[:index]), max_size=2, unique=True)) if index else []
    version = f"h{draw(st.integers(0, 2))}"
    if index % 2 == 0:
        return task(name, version, schedule=draw(st.sampled_from(CRONS)),
                    retries=draw(st.integers(0, 2)), suspend=draw(st.booleans()),
                    depends_on=[f"task/{d}" if NAMES.index(d) % 2 == 0 else f"stack/{d}"
                                for d in deps])
    return stack(name, version, apply=draw(st.sampled_from(["auto", "plan"])),
                 prune=draw(st.booleans()),
                 depends_on=[f"task/{d}" if NAMES.index(d) % 2 == 0 else f"stack/{d}"
                             for d in deps],
                 drift={"schedule": draw(st.sampled_from(CRONS)),
                        "remediate": draw(st.booleans())})


def _entry_id(name: str) -> EntryId:
    return EntryId(f"{'task' if NAMES.index(name) % 2 == 0 else 'stack'}/{name}")


@st.composite
def steps(draw: Any) -> tuple[str, Any]:
    what = draw(st.sampled_from(["declare", "declare", "remove", "invalid", "end", "end",
                                 "tick", "slots", "held", "unreadable", "copy"]))
    name = draw(st.sampled_from(NAMES))
    if what == "declare":
        return what, draw(declarations(name, NAMES.index(name)))
    if what == "end":
        return what, (name, draw(st.sampled_from(ENDINGS)), draw(st.sampled_from(DRIFTS)))
    if what == "tick":
        return what, draw(st.sampled_from([1, 9, 11, 30, 300, 3600, 86400]))
    if what == "slots":
        return what, draw(st.sampled_from([None, 0, 1, 2]))
    if what == "held":
        return what, (name, draw(st.sampled_from([None, "named in x.yaml"])))
    return what, name


DRIFTS = [DriftState.IN_SYNC, DriftState.DRIFTED]


class History:
    """Declarations, records, runs in flight and the time, changed as a daemon sees them."""

    def __init__(self) -> None:
        self.entries: dict[EntryId, Entry] = {}
        self.invalid: dict[EntryId, tuple[LoadError, ...]] = {}
        self.unreadable: frozenset[str] = frozenset()
        self.commits = 0
        self.state = self._desired()
        self.records: dict[EntryId, EntryRecord] = {}
        self.active: dict[EntryId, ActiveRun] = {}
        self.reports: dict[EntryId, RunReport] = {}
        self.now = NOW
        self.free: int | None = None
        self.held: dict[EntryId, str] = {}

    def _desired(self) -> DesiredState:
        self.commits += 1
        errors = tuple(e for errs in self.invalid.values() for e in errs)
        return DesiredState(revision=Revision(f"{self.commits:040d}"), entries=dict(self.entries),
                            invalid=dict(self.invalid), errors=errors,
                            files_with_errors=self.unreadable)

    def step(self, what: str, arg: Any) -> None:
        if what == "declare":
            self.entries[arg.id] = arg
            self.invalid.pop(arg.id, None)
        elif what == "remove":
            self.entries.pop(_entry_id(arg), None)
            self.invalid.pop(_entry_id(arg), None)
        elif what == "invalid":
            self.entries.pop(_entry_id(arg), None)
            self.invalid[_entry_id(arg)] = (LoadError(location=Location(path=f"{arg}.yaml"),
                                                      message="bad"),)
        elif what == "unreadable":
            self.unreadable = self.unreadable ^ {f"{arg}.yaml"}
        elif what == "end":
            self._end(*arg)
        elif what == "tick":
            self.now += timedelta(seconds=arg)
        elif what == "slots":
            self.free = arg
        elif what == "held":
            name, reason = arg
            if reason is None:
                self.held.pop(_entry_id(name), None)
            else:
                self.held[_entry_id(name)] = reason
        elif what == "copy" and _entry_id(arg) in self.records:
            # Read back or observed again: an equal record, another object.
            self.records[_entry_id(arg)] = self.records[_entry_id(arg)].model_copy()
        if what in ("declare", "remove", "invalid", "unreadable"):
            self.state = self._desired()

    def _end(self, name: str, state: RunState, drift: DriftState) -> None:
        """The run of `name` ends, or else the first run in flight."""
        entry_id = _entry_id(name)
        if entry_id not in self.reports:
            entry_id = min(self.reports, default=entry_id)
        report = self.reports.pop(entry_id, None)
        if report is None:
            return
        del self.active[entry_id]
        result = None
        if report.operation is Operation.DRIFT and state is RunState.SUCCEEDED:
            result = StackResult(operation=Operation.DRIFT, drift=drift)
        ended = report.model_copy(update={"state": state, "finished_at": self.now,
                                          "result": result})
        self.records[entry_id] = observed(self.records[entry_id], ended)

    def cycle(self, decided: Plan) -> None:
        """Store what the plan decided and start its runs, as the daemon does."""
        self.records.update(decided.record_updates)
        for start in decided.starts:
            request = start.request(self.now)
            if request is None:
                continue
            self.active[start.entry_id] = ActiveRun(
                run_id=request.run_id, operation=start.operation,
                spec_hash=request.entry.spec_hash, attempt=start.attempt)
            self.reports[start.entry_id] = RunReport(
                run_id=request.run_id, entry_id=start.entry_id,
                spec_hash=request.entry.spec_hash, operation=start.operation,
                trigger=start.trigger, attempt=start.attempt, revision=request.revision,
                state=RunState.RUNNING, started_at=self.now)


def incremental(history: History, planned: Planned | None) -> tuple[Plan, Planned]:
    """The daemon's way: the first plan of everything, then of the dirty entries only."""
    h = history
    if planned is None:
        decided = plan(h.state, h.records, h.active, h.now, kinds=KINDS, free_slots=h.free,
                       held=h.held)
        candidates = destroy_candidates(h.state, h.records, h.active)
        return decided, Planned(h.state, h.records, active=h.active, held=h.held,
                                decided=decided, candidates=candidates)
    changed = planned.changed(h.state, h.records, h.active)
    candidates = planned.destroy_candidates(
        changed, destroy_candidates(h.state, h.records, h.active, only=changed))
    assert candidates == destroy_candidates(h.state, h.records, h.active)
    only = planned.to_plan(changed, h.held, h.now, free_slots=h.free)
    decided = plan(h.state, h.records, h.active, h.now, kinds=KINDS, free_slots=h.free,
                   held=h.held, only=only) if only else Plan()
    planned.planned(h.state, h.records, active=h.active, held=h.held, decided=decided,
                    only=only, candidates=candidates)
    return decided, planned


ENDS = ("end", ("e0", RunState.SUCCEEDED, DriftState.IN_SYNC))
PRUNED = stack("e1", "h0", prune=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(steps(), min_size=1, max_size=40))
@example(history=[("declare", task("e0", "h0")), ENDS, ("remove", "e0"), ("unreadable", "e0"),
                  ("tick", 1), ("unreadable", "e0"), ("tick", 1)])
@example(history=[("declare", PRUNED), ENDS, ("held", ("e1", "named in x.yaml")),
                  ("remove", "e1"), ("tick", 1), ("held", ("e1", None)), ("tick", 1)])
@example(history=[("slots", 0), ("declare", task("e2", "h0")), ("declare", task("e0", "h0")),
                  ("tick", 1), ("slots", 1), ("tick", 1), ("tick", 1)])
@example(history=[("declare", PRUNED), ENDS, ("remove", "e1"), ("invalid", "e0"),
                  ("tick", 1), ("remove", "e0"), ("tick", 1)])
def test_planning_the_dirty_entries_decides_what_planning_all_of_them_does(
        history: list[tuple[str, Any]]) -> None:
    h = History()
    planned: Planned | None = None
    for what, arg in [("tick", 0), *history]:
        h.step(what, arg)
        full = plan(h.state, h.records, h.active, h.now, kinds=KINDS, free_slots=h.free,
                    held=h.held)
        decided, planned = incremental(h, planned)
        assert decided.starts == full.starts, what
        assert decided.record_updates == full.record_updates, what
        assert planned.waiting == full.waiting, what
        assert planned.wake_at == full.wake_at, what
        assert planned.timers.earliest() == full.changes_at, what
        h.cycle(full)
