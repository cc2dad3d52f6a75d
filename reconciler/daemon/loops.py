"""How cycles are driven: served from a work queue until SIGTERM, or to completion (`--once`).

The daemon's single worker runs here; the scheduler, webhooks and signals only enqueue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger

from reconciler.daemon.core import Daemon
from reconciler.scheduler import WATCH_SECONDS, Request, Scheduler, Wakeup, WorkQueue

BACKSTOP_SECONDS = 10.0
"""How often runs in flight are looked at when the executor says when one ends: in case a
notice goes missing (a supervisor whose pid the executor never learnt)."""
_STOP_CHECK_SECONDS = 0.25


def run_once(daemon: Daemon, *, stop: threading.Event, poll_seconds: float = 0.2) -> int:
    """Reconcile until nothing more is due, waiting for every run (retries and dependents of
    runs that just succeeded included); 0 when no entry ended failed or invalid. Runs in
    flight are looked at again as soon as the executor says one ended, or every
    `poll_seconds` with an executor that cannot say so."""
    changed = threading.Event()
    notified = daemon.executor.on_change(changed.set)
    backstop = BACKSTOP_SECONDS if notified else poll_seconds
    result = daemon.cycle(fetch=True)
    if daemon.revision is None:
        raise RuntimeError("; ".join(result.errors) or "no revision could be loaded")
    while not stop.is_set():
        if result.started == 0 and result.active == 0:
            if result.wake_at is None:
                break
            wait = (result.wake_at - daemon.clock()).total_seconds()
            stop.wait(max(wait, 0) + 0.05)
        else:
            _wait(changed, stop, backstop)
        changed.clear()
        result = daemon.cycle(fetch=False)
    return daemon.exit_code()


def _wait(changed: threading.Event, stop: threading.Event, seconds: float) -> None:
    """Until `changed` or `stop` is set, or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        if changed.wait(min(left, _STOP_CHECK_SECONDS)):
            return


def serve(daemon: Daemon, work: WorkQueue, scheduler: Scheduler, stop: threading.Event) -> None:
    """Serve wake-ups until `stop`. The cycle in progress (and its status commit) finishes
    first, so SIGTERM never leaves a half-written status. The end of a run is a wake-up of
    its own when the executor can tell; runs in flight are also looked at on a timer."""
    notified = daemon.executor.on_change(lambda: work.put(Wakeup("run ended", fetch=False)))
    watch_seconds = BACKSTOP_SECONDS if notified else WATCH_SECONDS
    scheduler.start()
    work.put(Wakeup("start"))
    try:
        while not stop.is_set():
            batch = work.take(timeout=0.5)
            if batch is None or stop.is_set():
                continue
            logger.debug("cycle: {}", ", ".join(sorted({w.reason for w in batch})))
            for wakeup in batch:
                if wakeup.request is not None:
                    _start(daemon, wakeup.request)
            result = daemon.cycle(fetch=any(w.fetch for w in batch),
                                  urgent=any(w.urgent for w in batch))
            scheduler.sync(daemon.desired)
            scheduler.wake_at(result.wake_at)
            scheduler.watch(result.active > 0, seconds=watch_seconds)
    finally:
        scheduler.shutdown()


def _start(daemon: Daemon, request: Request) -> None:
    try:
        request.started.set_result(daemon.request(request.entry_id, request.operation))
    except Exception as err:  # told to the API's caller
        request.started.set_exception(err)


def liveness(daemon: Daemon, *, limit_seconds: float,
             stop: threading.Event) -> Callable[[], tuple[bool, str]]:
    """The `/healthz` check: false once one cycle has lasted longer than `limit_seconds`, so
    that Kubernetes restarts a worker that is wedged (bounded parsing should make that never
    happen; if it does, a restart beats a daemon that answers probes and does nothing)."""

    def check() -> tuple[bool, str]:
        if stop.is_set():
            return False, "stopping"
        busy = daemon.busy_seconds()
        if busy > limit_seconds:
            return False, (f"one reconcile cycle has lasted {busy:.0f}s "
                           f"(--liveness-timeout {limit_seconds:g}s)")
        return True, "alive"

    return check
