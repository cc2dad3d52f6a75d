"""Plan rules, one row each: (desired, observed, now) → starts and phases. No Git, no executor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.declarations.models import StackSpec, TaskSpec
from reconciler.kinds.base import registry
from reconciler.plan import ActiveRun, Plan, backoff, cron_fired, plan
from reconciler.records import DriftInfo, EntryRecord, RunInfo, Success
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
    entry_id,
)

KINDS = registry()
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
REV = Revision("a" * 40)


def task(name: str, hash_: str = "h1", **spec: Any) -> Entry:
    return Entry(
        id=entry_id(Kind.TASK, name), kind=Kind.TASK, name=name,
        spec=TaskSpec(command=["true"], **spec), spec_hash=SpecHash(hash_),
        location=Location(path=f"{name}.yaml"), timeout_seconds=3600,
    )


def stack(name: str, hash_: str = "s1", **spec: Any) -> Entry:
    return Entry(
        id=entry_id(Kind.STACK, name), kind=Kind.STACK, name=name,
        spec=StackSpec(path=f"stacks/{name}", **spec), spec_hash=SpecHash(hash_),
        location=Location(path=f"{name}.yaml"), timeout_seconds=3600,
    )


def desired(*entries: Entry, **kwargs: Any) -> DesiredState:
    return DesiredState(revision=REV, entries={e.id: e for e in entries}, **kwargs)


def run(hash_: str, state: RunState, *, attempt: int = 1, op: Operation = Operation.RUN,
        ago: timedelta = timedelta(minutes=5), run_id: str = "r1") -> RunInfo:
    return RunInfo(id=RunId(run_id), operation=op, trigger=Trigger.NEW, spec_hash=SpecHash(hash_),
                   revision=REV, attempt=attempt, state=state,
                   started_at=NOW - ago - timedelta(seconds=5), finished_at=NOW - ago,
                   message="boom" if state is RunState.FAILED else "")


def record(e: Entry | str, *, last_run: RunInfo | None = None, success: str | None = None,
           **kw: Any) -> EntryRecord:
    eid = e.id if isinstance(e, Entry) else EntryId(e)
    kind = Kind.TASK if eid.startswith("task/") else Kind.STACK
    last_success = None
    if success is not None:
        last_success = Success(run_id=RunId(kw.pop("success_id", "ok1")),
                               spec_hash=SpecHash(success), revision=REV,
                               finished_at=NOW - timedelta(hours=1))
    return EntryRecord(entry=eid, kind=kind, name=eid.split("/")[1], last_run=last_run,
                       last_success=last_success, **kw)


def records(*recs: EntryRecord) -> dict[EntryId, EntryRecord]:
    return {r.entry: r for r in recs}


def only_start(p: Plan) -> tuple[str, Operation, Trigger, int]:
    assert len(p.starts) == 1, p
    s = p.starts[0]
    return s.entry_id, s.operation, s.trigger, s.attempt


A = task("a")
A2 = task("a", "h2")

# (name, desired, records, active, expected start or None, expected phase of task/a or None)
CASES: list[tuple[str, DesiredState, dict[EntryId, EntryRecord], dict[EntryId, ActiveRun],
                  tuple[str, Operation, Trigger, int] | None, Phase | None]] = [
    ("new entry runs", desired(A), {}, {}, ("task/a", Operation.RUN, Trigger.NEW, 1), None),
    ("succeeded at this version: nothing",
     desired(A), records(record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1")), {},
     None, Phase.SUCCEEDED),
    ("changed declaration runs again",
     desired(A2), records(record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1")), {},
     ("task/a", Operation.RUN, Trigger.CHANGED, 1), None),
    ("changed while running: waits for the run",
     desired(A2), records(record(A, success="h1")),
     {A.id: ActiveRun(run_id=RunId("r1"), operation=Operation.RUN, spec_hash=SpecHash("h1"),
                      attempt=1)},
     None, Phase.RUNNING),
    ("failed, no retries left",
     desired(A), records(record(A, last_run=run("h1", RunState.FAILED))), {}, None, Phase.FAILED),
    ("timed out, no retries left",
     desired(A), records(record(A, last_run=run("h1", RunState.TIMED_OUT))), {}, None,
     Phase.TIMED_OUT),
    ("failed with retries: waits for the backoff",
     desired(task("a", retries=2)),
     records(record(A, last_run=run("h1", RunState.FAILED, ago=timedelta(seconds=3)))), {},
     None, Phase.RETRYING),
    ("failed with retries: retries after the backoff",
     desired(task("a", retries=2)),
     records(record(A, last_run=run("h1", RunState.FAILED, ago=timedelta(seconds=11)))), {},
     ("task/a", Operation.RUN, Trigger.RETRY, 2), None),
    ("retries used up",
     desired(task("a", retries=2)),
     records(record(A, last_run=run("h1", RunState.FAILED, attempt=3, ago=timedelta(hours=1)))),
     {}, None, Phase.FAILED),
    ("interrupted run starts again without using an attempt",
     desired(A), records(record(A, last_run=run("h1", RunState.INTERRUPTED))), {},
     ("task/a", Operation.RUN, Trigger.RETRY, 1), None),
    ("a run recorded as running that no executor knows is interrupted",
     desired(A), records(record(A, last_run=run("h1", RunState.RUNNING))), {},
     ("task/a", Operation.RUN, Trigger.RETRY, 1), None),
    ("a failed version is not retried again after a new failure of an older hash",
     desired(A2), records(record(A, last_run=run("h2", RunState.FAILED), success="h1")), {},
     None, Phase.FAILED),
    ("suspended", desired(task("a", suspend=True)), {}, {}, None, Phase.SUSPENDED),
    ("cron fired since the last run",
     desired(task("a", schedule="0 * * * *")),
     records(record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1",
                    schedule_anchor=NOW - timedelta(minutes=61))), {},
     ("task/a", Operation.RUN, Trigger.SCHEDULE, 1), None),
    ("cron not fired yet",
     desired(task("a", schedule="30 * * * *")),
     records(record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1",
                    schedule_anchor=NOW - timedelta(minutes=1))), {}, None, Phase.SUCCEEDED),
    ("cron fires even after retries are used up",
     desired(task("a", schedule="0 * * * *")),
     records(record(A, last_run=run("h1", RunState.FAILED, ago=timedelta(hours=2)),
                    schedule_anchor=NOW - timedelta(hours=2))), {},
     ("task/a", Operation.RUN, Trigger.SCHEDULE, 1), None),
]


@pytest.mark.parametrize(("name", "want_desired", "recs", "active", "start", "phase"), CASES,
                         ids=[c[0] for c in CASES])
def test_rules(name: str, want_desired: DesiredState, recs: dict[EntryId, EntryRecord],
               active: dict[EntryId, ActiveRun], start: tuple[str, Operation, Trigger, int] | None,
               phase: Phase | None) -> None:
    p = plan(want_desired, recs, active, NOW, kinds=KINDS)
    if start is None:
        assert p.starts == ()
    else:
        assert only_start(p) == start
    if phase is not None:
        assert p.record_updates[EntryId("task/a")].phase is phase


def test_retry_wake_time_is_reported() -> None:
    failed = run("h1", RunState.FAILED, ago=timedelta(seconds=3))
    p = plan(desired(task("a", retries=1)), records(record(A, last_run=failed)), {}, NOW,
             kinds=KINDS)
    assert p.wake_at == failed.finished_at + timedelta(seconds=10)
    assert "retrying at" in p.record_updates[A.id].message
    assert p.record_updates[A.id].phase is Phase.RETRYING  # not Failed: retries remain
    assert p.record_updates[A.id].message.startswith("attempt 1 of 2 failed;")


def test_a_timed_out_attempt_with_retries_left_is_retrying() -> None:
    timed_out = run("h1", RunState.TIMED_OUT, ago=timedelta(seconds=3))
    p = plan(desired(task("a", retries=2)), records(record(A, last_run=timed_out)), {}, NOW,
             kinds=KINDS)
    assert p.record_updates[A.id].phase is Phase.RETRYING
    assert p.record_updates[A.id].message.startswith("attempt 1 of 3 timed out;")


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
    assert backoff(30) == timedelta(minutes=10)


def test_cron_fired_returns_latest_fire_time_only() -> None:
    since = NOW - timedelta(hours=3, minutes=30)
    assert cron_fired("0 * * * *", since, NOW) == NOW
    assert cron_fired("0 * * * *", None, NOW) is None
    assert cron_fired("0 3 * * *", NOW - timedelta(hours=1), NOW) is None


B = task("b", "hb", depends_on=["task/a"])


def test_dependent_is_blocked_until_dependency_succeeds() -> None:
    p = plan(desired(A, B), {}, {}, NOW, kinds=KINDS)
    assert [s.entry_id for s in p.starts] == ["task/a"]
    assert p.record_updates[B.id].phase is Phase.BLOCKED
    assert "task/a" in p.record_updates[B.id].message


def test_dependent_runs_after_dependency_and_remembers_it() -> None:
    recs = records(record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1"))
    p = plan(desired(A, B), recs, {}, NOW, kinds=KINDS)
    assert only_start(p) == ("task/b", Operation.RUN, Trigger.NEW, 1)
    assert p.starts[0].dependencies == {A.id: RunId("ok1")}


def test_dependent_reruns_when_dependency_succeeds_again() -> None:
    recs = records(
        record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1", success_id="ok2"),
        record(B, last_run=run("hb", RunState.SUCCEEDED), success="hb",
               dependencies={A.id: RunId("ok1")}),
    )
    p = plan(desired(A, B), recs, {}, NOW, kinds=KINDS)
    assert only_start(p) == ("task/b", Operation.RUN, Trigger.DEPENDENCY, 1)


def test_dependent_blocked_while_dependency_runs_or_failed() -> None:
    recs = records(record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1"),
                   record(B, last_run=run("hb", RunState.SUCCEEDED), success="hb",
                          dependencies={A.id: RunId("ok1")}))
    active = {A.id: ActiveRun(run_id=RunId("x"), operation=Operation.RUN,
                              spec_hash=SpecHash("h1"), attempt=1)}
    assert plan(desired(A, B), recs, active, NOW,
                kinds=KINDS).record_updates[B.id].phase is Phase.BLOCKED
    failed = records(record(A, last_run=run("h1", RunState.FAILED)))
    p = plan(desired(A, B), failed, {}, NOW, kinds=KINDS)
    assert p.record_updates[B.id].phase is Phase.BLOCKED
    assert "Pending" in p.record_updates[B.id].message or "Failed" in p.record_updates[B.id].message


def test_removed_entry_is_orphaned_not_destroyed() -> None:
    recs = records(record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1",
                          source="a.yaml:1"))
    p = plan(desired(), recs, {}, NOW, kinds=KINDS)
    assert p.starts == ()
    assert p.record_updates[A.id].phase is Phase.ORPHANED


def test_entry_of_a_file_that_failed_to_load_is_invalid_not_removed() -> None:
    recs = records(record(A, success="h1", source="a.yaml:3"))
    error = LoadError(location=Location(path="a.yaml", line=3, column=5), message="bad")
    p = plan(desired(errors=(error,), files_with_errors=frozenset({"a.yaml"})), recs, {}, NOW,
             kinds=KINDS)
    assert p.starts == ()
    assert p.record_updates[A.id].phase is Phase.INVALID


def test_invalid_entry_with_known_identity() -> None:
    error = LoadError(location=Location(path="a.yaml", line=7, column=12), field="spec.timeout",
                      message="bad duration", entry=A.id)
    p = plan(desired(invalid={A.id: (error,)}, errors=(error,)), {}, {}, NOW, kinds=KINDS)
    assert p.record_updates[A.id].phase is Phase.INVALID
    assert p.record_updates[A.id].message == "a.yaml:7:12: spec.timeout: bad duration"


S = stack("net", prune=True, drift={"schedule": "*/5 * * * *", "remediate": True})
APPLIED = run("s1", RunState.SUCCEEDED, op=Operation.APPLY)


def test_stack_apply_and_plan_only() -> None:
    assert only_start(plan(desired(S), {}, {}, NOW, kinds=KINDS)) == ("stack/net", Operation.APPLY,
                                                        Trigger.NEW, 1)
    plan_only = stack("net", apply="plan")
    assert only_start(plan(desired(plan_only), {}, {}, NOW, kinds=KINDS))[1] is Operation.PLAN
    recs = records(record(plan_only, last_run=run("s1", RunState.SUCCEEDED, op=Operation.PLAN),
                          success="s1"))
    assert plan(desired(plan_only), recs, {}, NOW,
                kinds=KINDS).record_updates[plan_only.id].phase is Phase.PLANNED


def test_stack_drift_check_when_cron_fires_then_remediation() -> None:
    base = record(S, last_run=APPLIED, success="s1", drift_anchor=NOW - timedelta(minutes=6),
                  drift=DriftInfo(state=DriftState.IN_SYNC))
    assert only_start(plan(desired(S), records(base), {}, NOW, kinds=KINDS)) == (
        "stack/net", Operation.DRIFT, Trigger.DRIFT, 1)
    drifted = base.model_copy(update={
        "drift_anchor": NOW, "drift": DriftInfo(state=DriftState.DRIFTED, run_id=RunId("d1"))})
    assert only_start(plan(desired(S), records(drifted), {}, NOW, kinds=KINDS)) == (
        "stack/net", Operation.APPLY, Trigger.REMEDIATE, 1)
    no_remedy = stack("net", drift={"schedule": "*/5 * * * *"})
    assert plan(desired(no_remedy), records(drifted), {}, NOW, kinds=KINDS).starts == ()


def test_removed_stack_with_prune_is_destroyed_only_on_a_clean_commit() -> None:
    recs = records(record(S, last_run=APPLIED, success="s1", prune=True, source="net.yaml:1"))
    start = plan(desired(), recs, {}, NOW, kinds=KINDS).starts[0]
    assert (start.operation, start.trigger, start.revision, start.entry) == (
        Operation.DESTROY, Trigger.PRUNE, REV, None)
    error = LoadError(location=Location(path="other.yaml"), message="broken")
    p = plan(desired(errors=(error,), files_with_errors=frozenset({"other.yaml"})), recs, {}, NOW,
             kinds=KINDS)
    assert p.starts == ()
    assert p.record_updates[S.id].phase is Phase.ORPHANED
    assert "load errors" in p.record_updates[S.id].message


def test_destroyed_stack_is_not_destroyed_twice() -> None:
    destroyed = run("s1", RunState.SUCCEEDED, op=Operation.DESTROY)
    recs = records(record(S, last_run=destroyed, prune=True))
    p = plan(desired(), recs, {}, NOW, kinds=KINDS)
    assert p.starts == ()
    assert p.record_updates[S.id].message == "declaration removed; destroyed"


def test_stack_never_gets_two_runs_at_once() -> None:
    recs = records(record(S, last_run=APPLIED, success="s1", drift_anchor=NOW - timedelta(hours=1)))
    active = {S.id: ActiveRun(run_id=RunId("x"), operation=Operation.DRIFT,
                              spec_hash=SpecHash("s1"), attempt=1)}
    changed = stack("net", "s2", prune=True, drift={"schedule": "*/5 * * * *"})
    p = plan(desired(changed), recs, active, NOW, kinds=KINDS)
    assert p.starts == ()
    assert p.record_updates[S.id].phase is Phase.RUNNING


# Plan's inputs gathered by the daemon: free slots, held destroys, requests. (name, desired,
# records, active, keyword inputs) → the starts (entry, operation, trigger) and the phase and
# a part of the message of each record that changes.
PRUNED = records(record(S, last_run=APPLIED, success="s1", prune=True, source="net.yaml:1"))
INPUT_CASES: list[tuple[str, DesiredState, dict[EntryId, EntryRecord], dict[EntryId, ActiveRun],
                        dict[str, Any], list[tuple[str, Operation, Trigger]],
                        dict[str, tuple[Phase, str]]]] = [
    ("no limit: everything due starts", desired(A, task("b")), {}, {}, {},
     [("task/a", Operation.RUN, Trigger.NEW), ("task/b", Operation.RUN, Trigger.NEW)],
     {"task/a": (Phase.RUNNING, "new"), "task/b": (Phase.RUNNING, "new")}),
    ("one free slot: the first starts, the next waits", desired(A, task("b")), {}, {},
     {"free_slots": 1}, [("task/a", Operation.RUN, Trigger.NEW)],
     {"task/a": (Phase.RUNNING, "new"), "task/b": (Phase.PENDING, "new; waiting for a free slot")}),
    ("no free slot: a destroy waits too", desired(), PRUNED, {}, {"free_slots": 0}, [],
     {"stack/net": (Phase.PENDING, "declaration removed with prune: true; waiting for a free")}),
    ("a destroy held by a document still naming the stack", desired(), PRUNED, {},
     {"held": {S.id: "not destroyed: x.yaml:3 still names it"}}, [],
     {"stack/net": (Phase.ORPHANED, "declaration removed; not destroyed: x.yaml:3 still")}),
    ("a destroy not held starts", desired(), PRUNED, {}, {"held": {}},
     [("stack/net", Operation.DESTROY, Trigger.PRUNE)], {}),
    ("a request runs now, and nothing else is planned", desired(A, S), {}, {},
     {"requests": {S.id: Operation.DRIFT}}, [("stack/net", Operation.DRIFT, Trigger.MANUAL)],
     {"stack/net": (Phase.RUNNING, "requested")}),
    ("a request of an entry in flight starts nothing", desired(S), {},
     {S.id: ActiveRun(run_id=RunId("x"), operation=Operation.APPLY, spec_hash=SpecHash("s1"),
                      attempt=1)},
     {"requests": {S.id: Operation.DRIFT}}, [], {}),
    ("a request of an undeclared entry starts nothing", desired(A), {}, {},
     {"requests": {S.id: Operation.DRIFT}}, [], {}),
    ("a request waits for a free slot", desired(S), {}, {},
     {"requests": {S.id: Operation.DRIFT}, "free_slots": 0}, [],
     {"stack/net": (Phase.PENDING, "requested; waiting for a free slot")}),
]


@pytest.mark.parametrize(("name", "want_desired", "recs", "active", "inputs", "starts",
                          "updates"), INPUT_CASES, ids=[c[0] for c in INPUT_CASES])
def test_inputs(name: str, want_desired: DesiredState, recs: dict[EntryId, EntryRecord],
                active: dict[EntryId, ActiveRun], inputs: dict[str, Any],
                starts: list[tuple[str, Operation, Trigger]],
                updates: dict[str, tuple[Phase, str]]) -> None:
    p = plan(want_desired, recs, active, NOW, kinds=KINDS, **inputs)
    assert [(s.entry_id, s.operation, s.trigger) for s in p.starts] == starts
    for entry, (phase, message) in updates.items():
        assert p.record_updates[EntryId(entry)].phase is phase
        assert message in p.record_updates[EntryId(entry)].message
    if "requests" in inputs:
        assert set(p.record_updates) <= set(inputs["requests"])


def test_a_started_run_is_recorded_with_its_anchors_and_dependencies() -> None:
    recs = records(record(A, last_run=run("h1", RunState.SUCCEEDED), success="h1"))
    p = plan(desired(A, B), recs, {}, NOW, kinds=KINDS)
    started = p.record_updates[B.id]
    assert started.last_run is not None
    assert (started.last_run.state, started.last_run.started_at) == (RunState.PENDING, NOW)
    assert (started.schedule_anchor, started.drift_anchor) == (NOW, NOW)
    assert started.dependencies == {A.id: RunId("ok1")}
    assert started.launched == B
    assert p.starts[0].request(NOW) is not None
    assert started.last_run.id == p.starts[0].request(NOW).run_id  # type: ignore[union-attr]


def test_a_declared_record_follows_its_declaration() -> None:
    drifting = stack("net", prune=True, drift={"schedule": "0 * * * *"})
    p = plan(desired(drifting), {}, {}, NOW, kinds=KINDS)
    rec = p.record_updates[drifting.id]
    assert (rec.spec_hash, rec.commit, rec.source, rec.prune) == ("s1", REV, "net.yaml:1", True)
    assert rec.drift is not None
    assert rec.drift.state is DriftState.UNKNOWN
    plan_only = stack("net", apply="plan", prune=True)
    assert plan(desired(plan_only), {}, {}, NOW,
                kinds=KINDS).record_updates[plan_only.id].prune is False


def test_a_record_that_does_not_change_is_not_updated() -> None:
    first = plan(desired(A), records(record(A, last_run=run("h1", RunState.SUCCEEDED),
                                            success="h1")), {}, NOW, kinds=KINDS)
    again = plan(desired(A), first.record_updates, {}, NOW, kinds=KINDS)
    assert again.record_updates == {}
    assert again.starts == ()


def test_a_destroy_carries_the_declaration_its_record_holds() -> None:
    recs = records(record(S, last_run=APPLIED, success="s1", prune=True, applied=S))
    start = plan(desired(), recs, {}, NOW, kinds=KINDS).starts[0]
    assert (start.operation, start.entry) == (Operation.DESTROY, S)


def test_a_destroy_without_a_declaration_fails_saying_so() -> None:
    p = plan(desired(), PRUNED, {}, NOW, kinds=KINDS)
    assert p.starts[0].request(NOW) is None
    assert p.record_updates[S.id].phase is Phase.FAILED
    assert p.record_updates[S.id].message == f"cannot destroy: no declaration at {REV}"


def test_a_failed_cron_run_of_a_version_in_force_is_retried_then_failed() -> None:
    hourly = task("a", schedule="0 * * * *", retries=1)
    failed = run("h1", RunState.FAILED, run_id="r2", ago=timedelta(seconds=1))
    rec = record(hourly, last_run=failed, success="h1", schedule_anchor=NOW)
    waiting = plan(desired(hourly), records(rec), {}, NOW, kinds=KINDS)
    assert waiting.record_updates[hourly.id].phase is Phase.RETRYING
    later = NOW + timedelta(seconds=30)
    assert only_start(plan(desired(hourly), records(rec), {}, later, kinds=KINDS)) == (
        "task/a", Operation.RUN, Trigger.RETRY, 2)
    spent = rec.model_copy(update={"last_run": failed.model_copy(update={"attempt": 2})})
    assert plan(desired(hourly), records(spent), {}, later,
                kinds=KINDS).record_updates[hourly.id].phase is Phase.FAILED
