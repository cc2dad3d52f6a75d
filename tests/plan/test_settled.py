"""The daemon skips planning when nothing plan reads changed and the time is before the plan's
`changes_at`. The full plan is the reference: over random histories, a plan that has reached
a fixed point (no start, no record change) decides exactly the same at any later time before
`changes_at`, which is what makes the skip safe."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.declarations.entries import DesiredState, Entry
from reconciler.plan import ActiveRun, Plan, plan
from reconciler.records import DriftInfo, EntryRecord
from reconciler.types import DriftState, EntryId, Operation, RunId, RunState
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
