"""Run and plan requests (DESIGN §9): a new value of `reconciler.io/run-requested` runs the
entry once more at its version; a new `plan-requested` plans a stack; each value once."""

from __future__ import annotations

from datetime import timedelta

from reconciler.plan import ActiveRun, plan
from reconciler.records import Requests
from reconciler.types import Operation, Phase, RunId, RunState, SpecHash, Trigger
from tests.plan.test_plan import KINDS, NOW, desired, only_start, record, records, run, stack, task

FAILED_FOR_GOOD = run("h1", RunState.FAILED, attempt=1)



def test_a_new_value_runs_a_failed_task_again_with_fresh_attempts() -> None:
    entry = task("a").model_copy(update={"run_requested": "fix-1"})
    failed = records(record(entry, last_run=FAILED_FOR_GOOD))
    result = plan(desired(entry), failed, {}, NOW, kinds=KINDS)
    assert only_start(result) == ("task/a", Operation.RUN, Trigger.REQUESTED, 1)
    updated = result.record_updates[entry.id]
    assert updated.requests == Requests(run="fix-1")
    assert "run requested (fix-1)" in updated.message
    # Handled: the same value never runs again, across a restart (the record is what the
    # status file holds).
    reread = updated.model_copy(update={"last_run": FAILED_FOR_GOOD})
    again = plan(desired(entry), records(reread), {}, NOW + timedelta(hours=1), kinds=KINDS)
    assert again.starts == ()
    assert again.record_updates[entry.id].phase is Phase.FAILED


def test_a_succeeded_task_runs_once_more_and_the_run_ids_differ_per_value() -> None:
    done = record(task("a"), last_run=run("h1", RunState.SUCCEEDED), success="h1")
    ids = set()
    for value in ("one", "two"):
        entry = task("a").model_copy(update={"run_requested": value})
        result = plan(desired(entry), records(done), {}, NOW, kinds=KINDS)
        assert only_start(result)[2] is Trigger.REQUESTED
        ids.add(result.starts[0].request(NOW).run_id)  # type: ignore[union-attr]
    assert len(ids) == 2


def test_the_request_waits_while_a_run_is_in_flight() -> None:
    entry = task("a").model_copy(update={"run_requested": "again"})
    rec = record(entry, last_run=run("h1", RunState.RUNNING), success="h1")
    active = {entry.id: ActiveRun(run_id=RunId("r1"), operation=Operation.RUN,
                                  spec_hash=SpecHash("h1"), attempt=1)}
    busy = plan(desired(entry), records(rec), active, NOW, kinds=KINDS)
    assert busy.starts == ()
    assert busy.record_updates[entry.id].requests is None
    assert "the requested run starts after it" in busy.record_updates[entry.id].message
    ended = rec.model_copy(update={"last_run": run("h1", RunState.SUCCEEDED)})
    assert only_start(plan(desired(entry), records(ended), {}, NOW, kinds=KINDS))[2] is (
        Trigger.REQUESTED)


def test_the_request_waits_for_a_free_slot_and_for_suspend() -> None:
    entry = task("a").model_copy(update={"run_requested": "again"})
    done = record(entry, last_run=run("h1", RunState.SUCCEEDED), success="h1")
    full = plan(desired(entry), records(done), {}, NOW, kinds=KINDS, free_slots=0)
    assert full.starts == ()
    assert full.record_updates[entry.id].requests is None
    held = entry.model_copy(update={"spec": entry.task.model_copy(update={"suspend": True})})
    assert plan(desired(held), records(done), {}, NOW, kinds=KINDS).starts == ()


def test_a_new_entry_runs_once_whatever_its_request_values() -> None:
    entry = task("a").model_copy(update={"run_requested": "x"})
    first = plan(desired(entry), {}, {}, NOW, kinds=KINDS)
    assert only_start(first)[2] is Trigger.NEW
    rec = first.record_updates[entry.id].model_copy(
        update={"last_run": run("h1", RunState.SUCCEEDED)})
    assert rec.requests == Requests(run="x")
    assert plan(desired(entry), records(rec), {}, NOW, kinds=KINDS).starts == ()


def test_a_changed_declaration_answers_the_request_in_the_same_run() -> None:
    old = record(task("a"), last_run=run("h1", RunState.SUCCEEDED), success="h1")
    entry = task("a", "h2").model_copy(update={"run_requested": "x"})
    result = plan(desired(entry), records(old), {}, NOW, kinds=KINDS)
    assert only_start(result)[2] is Trigger.CHANGED
    assert result.record_updates[entry.id].requests == Requests(run="x")


def test_a_plan_request_plans_a_stack_without_applying() -> None:
    entry = stack("net").model_copy(update={"plan_requested": "p1"})
    applied = record(entry, last_run=run("s1", RunState.SUCCEEDED, op=Operation.APPLY),
                     success="s1")
    result = plan(desired(entry), records(applied), {}, NOW, kinds=KINDS)
    assert only_start(result) == ("stack/net", Operation.DRIFT, Trigger.REQUESTED, 1)
    assert result.record_updates[entry.id].requests == Requests(plan="p1")
    run_asked = entry.model_copy(update={"run_requested": "r1"})
    assert only_start(plan(desired(run_asked), records(applied), {}, NOW, kinds=KINDS)) == (
        "stack/net", Operation.APPLY, Trigger.REQUESTED, 1)
