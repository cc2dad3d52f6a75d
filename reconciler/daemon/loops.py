"""How cycles are driven: served from a work queue until SIGTERM, or to completion (`--once`).

The daemon's single worker runs here; the scheduler, webhooks and signals only enqueue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from loguru import logger

from reconciler.daemon.core import Daemon
from reconciler.scheduler import Scheduler, Wakeup, WorkQueue


def run_once(daemon: Daemon, *, stop: threading.Event, poll_seconds: float = 0.2) -> int:
    """Reconcile until nothing more is due, waiting for every run (retries and dependents of
    runs that just succeeded included); 0 when no entry ended failed or invalid."""
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
            stop.wait(poll_seconds)
        result = daemon.cycle(fetch=False)
    return daemon.exit_code()


def serve(daemon: Daemon, work: WorkQueue, scheduler: Scheduler, stop: threading.Event) -> None:
    """Serve wake-ups until `stop`. The cycle in progress (and its status commit) finishes
    first, so SIGTERM never leaves a half-written status."""
    scheduler.start()
    work.put(Wakeup("start"))
    try:
        while not stop.is_set():
            batch = work.take(timeout=0.5)
            if batch is None or stop.is_set():
                continue
            logger.debug("cycle: {}", ", ".join(sorted({w.reason for w in batch})))
            result = daemon.cycle(fetch=any(w.fetch for w in batch),
                                  urgent=any(w.urgent for w in batch))
            scheduler.sync(daemon.desired)
            scheduler.wake_at(result.wake_at)
            scheduler.watch(result.active > 0)
    finally:
        scheduler.shutdown()


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
