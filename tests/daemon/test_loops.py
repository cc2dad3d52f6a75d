"""How cycles are driven (`daemon/loops.py`): to completion, from a work queue, and the
liveness check. In memory (tests/support/fakes.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from reconciler.daemon import loops
from reconciler.daemon.core import Daemon
from reconciler.daemon.loops import liveness, run_once, serve
from reconciler.declarations.loader import DeclarationLoader
from reconciler.metrics import Metrics
from reconciler.scheduler import Scheduler, WorkQueue
from reconciler.types import EntryId, Phase, RunState
from tests.support.fakes import ManualExecutor, MemorySource


def task(name: str, **spec: object) -> dict[str, str]:
    return {f"{name}.yaml": json.dumps({
        "apiVersion": "reconciler.io/v1alpha1", "kind": "Task", "metadata": {"name": name},
        "spec": {"command": ["true"], **spec}})}


def daemon(source: MemorySource, executor: ManualExecutor) -> Daemon:
    return Daemon(source=source, loader=DeclarationLoader(), executor=executor,
                  metrics=Metrics(process_metrics=False))


def test_run_once_waits_for_every_run_dependents_included() -> None:
    executor = ManualExecutor(ends=RunState.SUCCEEDED)
    d = daemon(MemorySource({**task("a"), **task("b", dependsOn=["task/a"])}), executor)
    assert run_once(d, stop=threading.Event(), poll_seconds=0.01) == 0
    assert [r.entry.id for r in executor.submitted] == ["task/a", "task/b"]
    assert d.records[EntryId("task/b")].phase is Phase.SUCCEEDED


class NotifyingExecutor(ManualExecutor):
    """Runs end only when the test says so, and the daemon is told at once."""

    def __init__(self) -> None:
        super().__init__()
        self.callback: Callable[[], None] | None = None

    def on_change(self, callback: Callable[[], None]) -> bool:
        self.callback = callback
        return True

    def end_all(self) -> None:
        for run_id in self.unfinished():
            self.finish(run_id)
        assert self.callback is not None
        self.callback()


def test_run_once_looks_as_soon_as_the_executor_says_a_run_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loops, "BACKSTOP_SECONDS", 3600.0)  # only the notice can wake it
    executor = NotifyingExecutor()
    d = daemon(MemorySource({**task("a"), **task("b", dependsOn=["task/a"])}), executor)
    codes: list[int] = []
    stop = threading.Event()
    worker = threading.Thread(target=lambda: codes.append(run_once(d, stop=stop)))
    worker.start()
    try:
        executor.wait_submitted(1)
        executor.end_all()
        assert executor.wait_submitted(2).entry.id == "task/b"
        executor.end_all()
        worker.join(30)
        assert codes == [0]
    finally:
        stop.set()
        worker.join(30)


def test_serve_cycles_when_the_executor_says_a_run_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loops, "BACKSTOP_SECONDS", 3600.0)
    executor = NotifyingExecutor()
    d = daemon(MemorySource({**task("a"), **task("b", dependsOn=["task/a"])}), executor)
    work = WorkQueue()
    scheduler = Scheduler(work, interval=timedelta(hours=1))
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(d, work, scheduler, stop))
    worker.start()
    try:
        executor.wait_submitted(1)
        executor.end_all()
        assert executor.wait_submitted(2).entry.id == "task/b"
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()


def test_run_once_is_1_when_a_run_failed() -> None:
    d = daemon(MemorySource(task("a")), ManualExecutor(ends=RunState.FAILED))
    assert run_once(d, stop=threading.Event(), poll_seconds=0.01) == 1
    assert d.records[EntryId("task/a")].phase is Phase.FAILED


def test_run_once_raises_when_nothing_could_be_loaded() -> None:
    source = MemorySource(task("a"))
    source.tip = None  # the branch does not exist on the remote
    with pytest.raises(RuntimeError, match="does not exist on the remote"):
        run_once(daemon(source, ManualExecutor()), stop=threading.Event())


def test_run_once_stops_when_asked() -> None:
    stop = threading.Event()
    stop.set()
    executor = ManualExecutor()  # its run never ends
    assert run_once(daemon(MemorySource(task("a")), executor), stop=stop) == 0
    assert len(executor.submitted) == 1


def test_serve_runs_a_cycle_per_wakeup_until_stopped() -> None:
    executor = ManualExecutor()
    d = daemon(MemorySource(task("a", schedule="0 3 * * *")), executor)
    work = WorkQueue()
    scheduler = Scheduler(work, interval=timedelta(hours=1))
    stop = threading.Event()
    worker = threading.Thread(target=serve, args=(d, work, scheduler, stop))
    worker.start()
    try:
        assert executor.wait_submitted(1).entry.id == "task/a"
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
    assert scheduler.cron_jobs == ("cron:task/a",)  # from the declarations in force


def test_liveness() -> None:
    d = daemon(MemorySource(task("a")), ManualExecutor())
    stop = threading.Event()
    assert liveness(d, limit_seconds=60, stop=stop)() == (True, "alive")
    ok, why = liveness(d, limit_seconds=-1, stop=stop)()
    assert not ok
    assert "--liveness-timeout -1s" in why
    stop.set()
    assert liveness(d, limit_seconds=60, stop=stop)() == (False, "stopping")
