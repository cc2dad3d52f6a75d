"""When to reconcile: the poll interval, task and drift crons, retry wake-ups, run watching.

Every job only enqueues a `Wakeup`; the daemon's single worker runs the cycles, so state is
mutated in one place. apscheduler 3.x stays behind this module (its 4.x API is different).
"""

from __future__ import annotations

import queue
import random
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.declarations.entries import DesiredState, Entry
from reconciler.declarations.fields import cron_trigger
from reconciler.kinds.base import kind_of
from reconciler.types import EntryId, Operation, RunId

WATCH_SECONDS = 1.0
"""How often runs in flight are looked at when the executor cannot say when one ends: finished
runs and their dependents show up fast, without asking the Git remote anything."""


@dataclass(frozen=True)
class Wakeup:
    reason: str
    fetch: bool = True
    """False for wake-ups that need no look at the remote (crons, retries, runs in flight)."""
    urgent: bool = False
    """Someone asked (a webhook, a new leader): fetch now, whatever the backoff."""
    request: Request | None = None
    """One run asked for through the control API."""


@dataclass(frozen=True)
class Request:
    entry_id: EntryId
    operation: Operation
    started: Future[RunId]


class WorkQueue:
    """Wake-ups for the one worker. Bursts coalesce: one cycle serves every wake-up pending."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Wakeup] = queue.Queue()

    def put(self, wakeup: Wakeup) -> None:
        self._queue.put(wakeup)

    def take(self, timeout: float | None = None) -> list[Wakeup] | None:
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        batch = [first]
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return batch


def crons(desired: DesiredState) -> dict[str, tuple[str, str]]:
    """Job id → cron expression, for every schedule and drift schedule: the crons plan reads
    from each entry's lifecycle, so a job fires exactly when plan would find it due."""
    jobs: dict[str, tuple[str, str]] = {}
    for entry in desired.entries.values():
        jobs.update(entry_crons(entry))
    return jobs


def entry_crons(entry: Entry) -> dict[str, tuple[str, str]]:
    """The jobs of one entry (see `crons`): job id → (cron expression, time zone)."""
    lifecycle = kind_of(entry.kind).lifecycle(entry)
    jobs: dict[str, tuple[str, str]] = {}
    if lifecycle.schedule:
        jobs[f"cron:{entry.id}"] = (lifecycle.schedule, lifecycle.zone)
    if lifecycle.drift:
        jobs[f"drift:{entry.id}"] = (lifecycle.drift, "UTC")
    return jobs


class Scheduler:
    def __init__(
        self,
        work: WorkQueue,
        *,
        interval: timedelta,
        jitter: float = 0.1,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._work = work
        self._clock = clock
        self._synced: DesiredState | None = None
        self._crons: dict[str, tuple[str, str]] = {}
        self._watching: float | None = None
        self._aps = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        seconds = max(interval.total_seconds(), 1.0)
        self._aps.add_job(
            self._enqueue, IntervalTrigger(seconds=seconds, jitter=int(seconds * jitter) or None),
            args=[Wakeup("poll")], id="poll",
        )

    def start(self) -> None:
        self._aps.start()

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def _enqueue(self, wakeup: Wakeup) -> None:
        self._work.put(wakeup)

    def sync(self, desired: DesiredState) -> None:
        """Make the cron jobs match the declarations. Only the entries whose declaration
        changed since the last call are looked at (the loader keeps an unchanged entry the
        same object), and only their jobs are touched."""
        if desired is self._synced:
            return
        before = self._synced.entries if self._synced is not None else {}
        self._synced = desired
        after = desired.entries
        changed = [e for e, entry in after.items() if before.get(e) is not entry]
        changed += before.keys() - after.keys()
        for entry_id in changed:
            old = entry_crons(before[entry_id]) if entry_id in before else {}
            new = entry_crons(after[entry_id]) if entry_id in after else {}
            for job_id in old.keys() - new.keys():
                self._aps.remove_job(job_id)
                del self._crons[job_id]
            for job_id, expression in new.items():
                if old.get(job_id) == expression:
                    continue
                self._aps.add_job(self._enqueue, cron_trigger(*expression), id=job_id,
                                  replace_existing=True, args=[Wakeup(job_id, fetch=False)])
                self._crons[job_id] = expression

    def wake_at(self, when: datetime | None) -> None:
        """One wake-up at `when` (a retry's backoff ends); replaces the previous one."""
        if when is None:
            return
        self._aps.add_job(self._enqueue, DateTrigger(run_date=max(when, self._clock())),
                          id="wake", replace_existing=True, args=[Wakeup("retry", fetch=False)])

    def watch(self, active: bool, *, seconds: float = WATCH_SECONDS) -> None:
        """Look at runs every `seconds` while any is in flight, and not at all otherwise."""
        wanted = seconds if active else None
        if wanted == self._watching:
            return
        self._watching = wanted
        if wanted is not None:
            self._aps.add_job(self._enqueue, IntervalTrigger(seconds=wanted), id="watch",
                              replace_existing=True, args=[Wakeup("watch", fetch=False)])
        else:
            self._aps.remove_job("watch")

    @property
    def cron_jobs(self) -> Iterable[str]:
        return tuple(self._crons)


def jittered(seconds: float, fraction: float = 0.1) -> float:
    """A backoff with ±fraction of noise, so replicas and retries do not move in lockstep."""
    return seconds * (1 + random.uniform(-fraction, fraction))  # noqa: S311 - not for secrets
