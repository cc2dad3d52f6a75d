"""`Scheduler.sync` looks only at the entries whose declaration changed since its last call
(the loader keeps an unchanged entry the same object): over random histories of declarations
edited, added and removed, its cron jobs are always those `crons` gives for the whole desired
state, and a job whose entry kept its declaration object is never replaced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.declarations.cron import cron_trigger
from reconciler.declarations.entries import Entry
from reconciler.scheduler import Scheduler, WorkQueue, crons
from reconciler.types import EntryId
from tests.scheduler.test_scheduler import HOUR, desired, jobs, stack, task

SCHEDULES = [None, "0 3 * * *", "*/15 * * * *"]
NAMES = ["a", "b", "c"]


@st.composite
def versions(draw: Any) -> tuple[str, Entry | None]:
    name = draw(st.sampled_from(NAMES))
    if draw(st.integers(0, 3)) == 0:
        return name, None
    schedule = draw(st.sampled_from(SCHEDULES))
    made = task(name, schedule) if draw(st.booleans()) else stack(name, schedule)
    return name, made


@pytest.fixture(scope="module")
def scheduler() -> Iterator[Scheduler]:
    made = Scheduler(WorkQueue(), interval=HOUR)
    made.start()
    try:
        yield made
    finally:
        made.shutdown()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(history=st.lists(st.lists(versions(), max_size=3), min_size=1, max_size=10))
def test_sync_keeps_the_jobs_crons_gives_touching_only_changed_entries(
        scheduler: Scheduler, history: list[list[tuple[str, Entry | None]]]) -> None:
    scheduler.sync(desired())
    entries: dict[EntryId, Entry] = {}
    for edits in history:
        before = dict(entries)
        for name, entry in edits:
            for old in [e for e in entries if e.endswith(f"/{name}")]:
                del entries[old]
            if entry is not None:
                entries[entry.id] = entry
        kept = {job_id: job for job_id, job in jobs(scheduler).items()
                if job_id != "poll" and before.get(EntryId(job_id.split(":", 1)[1]))
                is entries.get(EntryId(job_id.split(":", 1)[1]))}
        state = desired(*entries.values())
        scheduler.sync(state)
        now = jobs(scheduler)
        assert {j: str(job.trigger) for j, job in now.items() if j != "poll"} == {
            j: str(scheduler_trigger) for j, scheduler_trigger in _triggers(crons(state)).items()}
        assert set(scheduler.cron_jobs) == set(crons(state))
        for job_id, job in kept.items():
            assert now[job_id] is job, job_id  # not added again


def _triggers(wanted: dict[str, tuple[str, str]]) -> dict[str, object]:
    return {job_id: cron_trigger(*cron) for job_id, cron in wanted.items()}
