"""What the daemon does when things around it go wrong: a status branch it may not push to, a
secret printed by a task, declarations kept in a subfolder."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from reconciler.daemon.core import Daemon
from reconciler.declarations.loader import DeclarationLoader
from tests.daemon.conftest import World, task
from tests.support.gitservers import refuse_pushes_to

CANARY = "canary-9f3KqZ-not-for-status"


def test_refused_status_push_loses_nothing(world: Callable[..., World],
                                           tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    w = world({"hello.yaml": task("hello", f"open({str(ledger)!r}, 'a').write('ran\\n')")})
    hook = refuse_pushes_to(w.bare, "reconciler-status")
    result = w.daemon.cycle(fetch=True)
    while result.active or result.started:
        result = w.daemon.cycle(fetch=False)
    assert any("status push failed" in e for e in result.errors)
    assert (w.metric("reconciler_status_push_total", result="error") or 0) >= 1
    assert w.status_head() == ""  # nothing could be written
    w.restart()  # and the daemon restarts before it could
    hook.unlink()
    w.settle()
    status = w.status("task/hello")
    assert (status["phase"], status["lastRun"]["exitCode"]) == ("Succeeded", 0)
    assert ledger.read_text() == "ran\n"  # reported from the journal, not run again


def test_a_secret_printed_by_a_task_never_reaches_the_status_branch(
        world: Callable[..., World], tmp_path: Path) -> None:
    secrets = tmp_path / "secrets" / "api"
    secrets.mkdir(parents=True)
    (secrets / "token").write_text(CANARY)
    w = world({"leaky.yaml": task(
        "leaky", "import os; print('token is', os.environ['TOKEN'])",
        secretEnv={"TOKEN": {"secret": "api", "key": "token"}})})
    w.settle()
    status = w.status("task/leaky")
    assert status["phase"] == "Succeeded"
    assert "token is ****" in status["lastRun"]["logTail"]
    everything = subprocess.run(
        ["git", "--git-dir", str(w.bare), "grep", "-I", "-c", CANARY, "reconciler-status"],
        capture_output=True, text=True, check=False)
    assert everything.returncode == 1, everything.stdout  # no match anywhere on the branch


def test_declarations_in_a_subfolder_only(world: Callable[..., World]) -> None:
    w = world({
        "reconciler/tasks/a.yaml": task("a"),
        "app/config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n",
        "elsewhere/b.yaml": task("b"),  # outside --path: not reconciled
    })
    w.daemon.executor.close()
    w.daemon = Daemon(source=w.daemon.source, loader=DeclarationLoader(path="reconciler"),
                      executor=w._daemon().executor, metrics=w.metrics, clock=w.clock)
    w.settle()
    assert w.status("task/a")["phase"] == "Succeeded"
    readme = subprocess.run(["git", "--git-dir", str(w.bare), "show",
                             "reconciler-status:status/README.md"],
                            capture_output=True, text=True, check=True).stdout
    assert "task/b" not in readme
    assert "0 load errors" in readme
