"""Status commits while runs churn (daemon/publisher.py): at most one a second while runs are
in flight, at once when nothing is or when a change must not wait, and what was held is
published (and its runs acknowledged) by the next commit or when the daemon stops.

In memory with a clock the test moves (tests/support/fakes.py), then the whole `reconciler
run` in this process, stopped by a real SIGTERM while a commit is held."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import build_parser
from reconciler.commands import run as run_command
from reconciler.daemon import publisher
from reconciler.daemon.core import Daemon
from reconciler.daemon.publisher import COALESCE_SECONDS, StatusPublisher
from reconciler.declarations.loader import DeclarationLoader
from reconciler.metrics import Metrics
from reconciler.redact import redactor
from reconciler.runs import RunReport
from reconciler.types import RunState
from tests.e2e.harness import status_file, task_yaml
from tests.support.fakes import ManualExecutor, MemorySource
from tests.support.gitservers import GitDaemon, make_bare_remote
from tests.support.waiting import wait_until

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def doc(kind: str, name: str, **spec: Any) -> str:
    return json.dumps({"apiVersion": "reconciler.io/v1alpha1", "kind": kind,
                       "metadata": {"name": name}, "spec": spec}) + "\n"


def tasks(*names: str) -> dict[str, str]:
    return {f"{name}.yaml": doc("Task", name, command=["true"]) for name in names}


class Ticks:
    """The publisher's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, files: dict[str, str]) -> None:
        self.source = MemorySource(files)
        self.executor = ManualExecutor()
        self.daemon = Daemon(source=self.source, loader=DeclarationLoader(),
                             executor=self.executor, metrics=Metrics(process_metrics=False),
                             clock=lambda: NOW)
        self.ticks = Ticks()
        self.daemon.publisher = StatusPublisher(self.source, redact=redactor, clock=self.ticks)

    def run_of(self, name: str) -> RunReport:
        return next(r for r in self.executor.runs.values() if r.entry_id == f"task/{name}")

    def finish(self, name: str) -> None:
        self.executor.finish(self.run_of(name).run_id)
        self.daemon.cycle(fetch=False)

    def phase(self, name: str) -> str:
        text = self.source.status[f"status/tasks/{name}.yaml"].decode()
        return next(line.split(": ")[1] for line in text.splitlines()
                    if line.startswith("phase: "))

    @property
    def commits(self) -> int:
        return len(self.source.status_commits)


def test_a_run_ending_while_a_commit_is_held_is_published_and_acknowledged_by_the_next() -> None:
    w = World(tasks("a", "b", "c"))
    w.daemon.cycle()
    assert w.commits == 1  # the first commit is not held: there was none before it

    w.finish("a")
    w.finish("b")
    assert w.commits == 1
    assert w.daemon.publisher.holding
    assert w.phase("a") == "Running"
    assert not w.executor.acknowledged  # not before a commit shows them ended
    assert w.daemon.cycle(fetch=False).wake_at is not None  # a cycle when it is due

    w.ticks.now += COALESCE_SECONDS
    w.daemon.cycle(fetch=False)
    assert w.commits == 2
    assert (w.phase("a"), w.phase("b"), w.phase("c")) == ("Succeeded", "Succeeded", "Running")
    message = w.source.status_commits[-1]
    assert w.run_of("a").run_id in message
    assert w.run_of("b").run_id in message
    assert w.executor.acknowledged == {w.run_of("a").run_id, w.run_of("b").run_id}

    w.finish("c")  # nothing in flight any more: at once, the second not over
    assert w.commits == 3
    assert w.phase("c") == "Succeeded"
    assert w.run_of("c").run_id in w.executor.acknowledged
    assert not w.daemon.publisher.holding


def test_many_cycles_while_runs_are_in_flight_make_one_commit_a_second() -> None:
    w = World(tasks("long", *(f"t{n}" for n in range(12))))
    w.executor.slots = 2
    w.daemon.cycle()
    for step in range(12):
        w.finish(next(r.entry_id.split("/")[1] for r in w.executor.runs.values()
                      if not r.state.finished and r.entry_id != "task/long"))
        w.ticks.now += COALESCE_SECONDS / 4
        assert w.commits == 1 + step // 4  # cycles at 0, 0.25, ... 1.0 s: the next at 1.0
    w.finish("long")
    w.daemon.cycle(fetch=False)
    assert all(w.phase(f"t{n}") == "Succeeded" for n in range(12))
    assert len(w.executor.acknowledged) == 13


def test_load_errors_are_published_at_once_while_runs_are_in_flight() -> None:
    w = World(tasks("a", "b"))
    w.daemon.cycle()
    w.finish("a")
    assert w.daemon.publisher.holding
    w.source.push({"bad.yaml": doc("Task", "bad", command=["true"], timeout="soon")})
    w.daemon.cycle()
    assert w.commits == 2
    assert b"bad.yaml" in w.source.status["status/errors.yaml"]
    assert w.phase("a") == "Succeeded"  # what was held goes with it
    assert w.run_of("a").run_id in w.executor.acknowledged


def test_a_destroy_is_published_at_once_while_runs_are_in_flight() -> None:
    module = {"stacks/net/main.tf": 'resource "terraform_data" "x" {}\n'}
    w = World({**tasks("a"), "net.yaml": doc("Stack", "net", path="stacks/net", prune=True),
               **module})
    w.daemon.cycle()
    apply = next(r for r in w.executor.runs.values() if r.entry_id == "stack/net")
    w.executor.finish(apply.run_id)
    w.daemon.cycle(fetch=False)  # task/a still runs: held
    assert w.daemon.publisher.holding
    w.source.push({"net.yaml": None})
    w.daemon.cycle()
    assert w.commits == 2
    assert "operation: destroy" in w.source.status["status/stacks/net.yaml"].decode()


def test_stopping_publishes_what_is_held() -> None:
    w = World(tasks("a", "b"))
    w.daemon.cycle()
    w.finish("a")
    assert w.commits == 1

    w.daemon.flush_status()

    assert w.commits == 2
    assert w.phase("a") == "Succeeded"
    assert w.run_of("a").run_id in w.executor.acknowledged
    w.daemon.flush_status()  # nothing held: nothing more
    assert w.commits == 2


@pytest.fixture
def own_signals() -> Iterator[None]:
    """`reconciler run` installs its SIGTERM and SIGINT handlers; the test runner's return."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_sigterm_while_a_commit_is_held_publishes_it(
    git_daemon: GitDaemon, git_root: Path, tmp_path: Path, own_signals: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publisher, "COALESCE_SECONDS", 3600.0)  # held until the daemon stops
    release, ended = tmp_path / "release", tmp_path / "ended"
    wait = (f"import pathlib, time; p = pathlib.Path({str(release)!r})\n"
            "while not p.exists(): time.sleep(0.05)\n"
            f"pathlib.Path({str(ended)!r}).touch()")
    bare = make_bare_remote(git_root / "held.git", {
        "quick.yaml": task_yaml("quick", [sys.executable, "-c", "print('done')"]),
        "long.yaml": task_yaml("long", [sys.executable, "-c", wait], timeout="2m"),
    })
    held = threading.Event()
    publish = StatusPublisher.publish

    def spy(self: StatusPublisher, *args: Any, **kwargs: Any) -> bool:
        pushed = publish(self, *args, **kwargs)
        if self.holding and any(r.entry_id == "task/quick" for r in kwargs["finished"]):
            held.set()
        return pushed

    monkeypatch.setattr(StatusPublisher, "publish", spy)

    def terminate() -> None:
        if held.wait(60):
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    args = build_parser().parse_args([
        "run", "--repo", git_daemon.url("held.git"), "--state-dir", str(tmp_path / "state"),
        "--interval", "1s", "--listen", "127.0.0.1:0", "--log-level", "WARNING"])
    try:
        assert run_command.run(args) == 0
    finally:
        release.touch()  # the long run ends by itself; its supervisor then exits
        held.set()
        killer.join(10)

    quick = status_file(bare, "status/tasks/quick.yaml")
    assert quick is not None
    assert quick["phase"] == "Succeeded"
    assert quick["lastRun"]["state"] == RunState.SUCCEEDED.value
    wait_until(ended.exists, timeout=60, interval=0.1, what="the long run to end")
