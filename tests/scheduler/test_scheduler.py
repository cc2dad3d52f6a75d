"""The scheduler on the real apscheduler: what each job enqueues, and how the cron jobs follow
the declarations. Jobs are looked at in apscheduler's own job table, and a job made due now
(its next run time moved to the present) is how a cron is seen to fire without waiting for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.job import Job

from reconciler.declarations.cron import cron_trigger
from reconciler.declarations.entries import DesiredState, Entry, Location
from reconciler.declarations.models import StackSpec, TaskSpec
from reconciler.scheduler import WATCH_SECONDS, Scheduler, Wakeup, WorkQueue, crons, jittered
from reconciler.types import Kind, Revision, SpecHash, entry_id
from tests.support.waiting import wait_until

HOUR = timedelta(hours=1)


def task(name: str, schedule: str | None = None) -> Entry:
    return Entry(
        id=entry_id(Kind.TASK, name), kind=Kind.TASK, name=name,
        spec=TaskSpec(command=["true"], schedule=schedule), spec_hash=SpecHash("t" * 64),
        location=Location(path=f"tasks/{name}.yaml"), timeout_seconds=3600,
    )


def stack(name: str, drift_schedule: str | None = None) -> Entry:
    drift: dict[str, Any] = {"schedule": drift_schedule} if drift_schedule else {}
    return Entry(
        id=entry_id(Kind.STACK, name), kind=Kind.STACK, name=name,
        spec=StackSpec.model_validate({"path": f"stacks/{name}", "drift": drift}),
        spec_hash=SpecHash("s" * 64), location=Location(path=f"stacks/{name}.yaml"),
        timeout_seconds=3600,
    )


def desired(*entries: Entry) -> DesiredState:
    return DesiredState(revision=Revision("a" * 40), entries={e.id: e for e in entries})


def jobs(scheduler: Scheduler) -> dict[str, Job]:
    """apscheduler's job table, which the scheduler keeps to itself: what will run, and when."""
    return {job.id: job for job in scheduler._aps.get_jobs()}


def fire_now(scheduler: Scheduler, job_id: str) -> None:
    """Make a job due at once, so apscheduler runs it as it would when its time comes."""
    scheduler._aps.modify_job(job_id, next_run_time=datetime.now(UTC))


def next_wakeup(work: WorkQueue, reason: str, *, timeout: float = 30) -> Wakeup:
    """The first wake-up for `reason` to arrive, passing over others (a poll, say)."""
    seen: list[Wakeup] = []

    def arrived() -> Wakeup | None:
        batch = work.take(timeout=0.2) or []
        seen.extend(batch)
        return next((wakeup for wakeup in batch if wakeup.reason == reason), None)

    return wait_until(arrived, timeout=timeout, interval=0, what=f"a {reason!r} wake-up",
                      details=lambda: f"arrived instead: {seen}")


@pytest.fixture
def work() -> WorkQueue:
    return WorkQueue()


@pytest.fixture
def scheduler(work: WorkQueue) -> Iterator[Scheduler]:
    # An hour's poll interval: no poll gets in the way of what a test waits for.
    started = Scheduler(work, interval=HOUR)
    started.start()
    try:
        yield started
    finally:
        started.shutdown()


# --- WorkQueue ---------------------------------------------------------------------------


def test_one_take_serves_every_wake_up_pending_in_order(work: WorkQueue) -> None:
    burst = [Wakeup("poll"), Wakeup("webhook", urgent=True), Wakeup("cron:task/a", fetch=False)]
    for wakeup in burst:
        work.put(wakeup)

    assert work.take(timeout=5) == burst
    assert work.take(timeout=0) is None


def test_take_on_an_empty_queue_returns_none_after_its_timeout(work: WorkQueue) -> None:
    assert work.take(timeout=0.01) is None


def test_take_waits_for_a_wake_up_put_by_another_thread(work: WorkQueue) -> None:
    taken: list[list[Wakeup] | None] = []
    taker = threading.Thread(target=lambda: taken.append(work.take(timeout=30)))
    taker.start()
    work.put(Wakeup("webhook", urgent=True))
    taker.join(30)

    assert taken == [[Wakeup("webhook", urgent=True)]]


def test_a_wake_up_fetches_by_default_and_is_not_urgent() -> None:
    assert Wakeup("poll") == Wakeup("poll", fetch=True, urgent=False)


# --- crons() -----------------------------------------------------------------------------


def test_crons_names_task_schedules_and_stack_drift_schedules() -> None:
    state = desired(
        task("nightly", "0 3 * * *"), task("once"),
        stack("network", "*/15 * * * *"), stack("static"),
    )

    assert crons(state) == {"cron:task/nightly": ("0 3 * * *", "UTC"),
                            "drift:stack/network": ("*/15 * * * *", "UTC")}


def test_crons_of_nothing_scheduled_is_empty() -> None:
    assert crons(desired()) == {}
    assert crons(desired(task("once"), stack("static"))) == {}


# --- cron jobs following the declarations --------------------------------------------------


def test_sync_adds_a_job_per_schedule_that_enqueues_a_wake_up_without_fetch(
        scheduler: Scheduler, work: WorkQueue) -> None:
    scheduler.sync(desired(task("nightly", "0 3 * * *"), stack("network", "*/15 * * * *")))

    table = jobs(scheduler)
    assert sorted(scheduler.cron_jobs) == ["cron:task/nightly", "drift:stack/network"]
    assert str(table["cron:task/nightly"].trigger) == str(cron_trigger("0 3 * * *"))
    assert str(table["drift:stack/network"].trigger) == str(cron_trigger("*/15 * * * *"))

    fire_now(scheduler, "drift:stack/network")
    assert next_wakeup(work, "drift:stack/network") == Wakeup("drift:stack/network", fetch=False)
    fire_now(scheduler, "cron:task/nightly")
    assert next_wakeup(work, "cron:task/nightly") == Wakeup("cron:task/nightly", fetch=False)


def test_sync_removes_dropped_schedules_replaces_changed_ones_and_adds_new_ones(
        scheduler: Scheduler) -> None:
    scheduler.sync(desired(task("a", "0 3 * * *"), task("b", "0 4 * * *")))
    scheduler.sync(desired(task("a", "30 3 * * *"), task("b"), stack("c", "0 * * * *")))

    table = jobs(scheduler)
    assert sorted(scheduler.cron_jobs) == ["cron:task/a", "drift:stack/c"]
    assert "cron:task/b" not in table
    assert str(table["cron:task/a"].trigger) == str(cron_trigger("30 3 * * *"))
    assert str(table["drift:stack/c"].trigger) == str(cron_trigger("0 * * * *"))


def test_sync_leaves_an_unchanged_schedule_alone(scheduler: Scheduler) -> None:
    scheduler.sync(desired(task("a", "0 3 * * *")))
    before = jobs(scheduler)["cron:task/a"]
    scheduler.sync(desired(task("a", "0 3 * * *"), task("other")))

    assert jobs(scheduler)["cron:task/a"] is before


def test_sync_to_no_schedules_removes_every_cron_job_and_keeps_the_others(
        scheduler: Scheduler) -> None:
    scheduler.watch(True)
    scheduler.sync(desired(task("a", "0 3 * * *"), stack("b", "0 * * * *")))
    scheduler.sync(desired())

    assert tuple(scheduler.cron_jobs) == ()
    assert sorted(jobs(scheduler)) == ["poll", "watch"]


# --- the poll interval ---------------------------------------------------------------------


def test_the_poll_job_enqueues_a_fetching_wake_up_each_interval(work: WorkQueue) -> None:
    polling = Scheduler(work, interval=timedelta(seconds=1))
    polling.start()
    try:
        first = next_wakeup(work, "poll")
        second = next_wakeup(work, "poll")
    finally:
        polling.shutdown()

    assert first == second == Wakeup("poll", fetch=True, urgent=False)


@pytest.mark.parametrize(("interval", "jitter", "seconds", "spread"), [
    (timedelta(minutes=5), 0.1, 300, 30),
    (timedelta(seconds=30), 0.0, 30, None),
    (timedelta(seconds=5), 0.1, 5, None),  # a tenth of 5 s rounds down to no jitter
    (timedelta(0), 0.1, 1, None),  # never more often than once a second
])
def test_the_poll_interval_and_its_jitter(work: WorkQueue, interval: timedelta, jitter: float,
                                          seconds: float, spread: int | None) -> None:
    made = Scheduler(work, interval=interval, jitter=jitter)
    trigger = jobs(made)["poll"].trigger

    assert trigger.interval == timedelta(seconds=seconds)
    assert trigger.jitter == spread


# --- retry wake-ups -------------------------------------------------------------------------


def test_wake_at_a_time_past_wakes_at_once_without_fetch(
        scheduler: Scheduler, work: WorkQueue) -> None:
    scheduler.wake_at(datetime.now(UTC) - HOUR)

    assert next_wakeup(work, "retry") == Wakeup("retry", fetch=False)
    # Done once fired. Waiting for that also keeps the fixture's shutdown from racing
    # apscheduler's removal of the fired job (its thread then dies with a JobLookupError).
    wait_until(lambda: "wake" not in jobs(scheduler), what="the fired wake-up to be dropped",
               details=lambda: f"jobs: {sorted(jobs(scheduler))}")


def test_wake_at_is_never_earlier_than_the_clock_and_replaces_the_previous_one(
        work: WorkQueue) -> None:
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    clocked = Scheduler(work, interval=HOUR, clock=lambda: now)
    clocked.start()
    try:
        clocked.wake_at(now - HOUR)
        assert jobs(clocked)["wake"].next_run_time == now
        clocked.wake_at(now + HOUR)
        assert jobs(clocked)["wake"].next_run_time == now + HOUR
        assert sorted(jobs(clocked)) == ["poll", "wake"]
    finally:
        clocked.shutdown()


def test_wake_at_nothing_adds_no_job(scheduler: Scheduler) -> None:
    scheduler.wake_at(None)

    assert sorted(jobs(scheduler)) == ["poll"]


# --- watching runs in flight ----------------------------------------------------------------


def test_watch_looks_at_runs_every_second_while_any_is_in_flight(
        scheduler: Scheduler, work: WorkQueue) -> None:
    scheduler.watch(True)
    scheduler.watch(True)  # still in flight: the same job goes on

    assert jobs(scheduler)["watch"].trigger.interval == timedelta(seconds=WATCH_SECONDS)
    assert next_wakeup(work, "watch") == Wakeup("watch", fetch=False)

    scheduler.watch(False)
    scheduler.watch(False)  # nothing in flight still: nothing to remove
    assert "watch" not in jobs(scheduler)


# --- shutdown -------------------------------------------------------------------------------


def test_shutdown_stops_the_scheduler_and_is_harmless_twice_or_before_start(
        work: WorkQueue) -> None:
    never_started = Scheduler(work, interval=HOUR)
    never_started.shutdown()

    started = Scheduler(work, interval=HOUR)
    started.start()
    assert started._aps.running
    started.shutdown()
    started.shutdown()
    assert not started._aps.running


# --- jittered -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "fraction"), [(10.0, 0.1), (60.0, 0.5), (1.0, 0.25)])
def test_jittered_stays_within_the_fraction_either_side(seconds: float, fraction: float) -> None:
    samples = [jittered(seconds, fraction) for _ in range(2000)]

    assert all(seconds * (1 - fraction) <= s <= seconds * (1 + fraction) for s in samples)
    # Noise both ways: 2000 draws all on one side would happen once in 2**1999.
    assert min(samples) < seconds < max(samples)


def test_jittered_defaults_to_a_tenth_and_no_fraction_is_no_noise() -> None:
    assert all(9.0 <= jittered(10.0) <= 11.0 for _ in range(500))
    assert jittered(10.0, 0.0) == 10.0
