"""Task behaviour across cycles: crons, retries with backoff, dependencies, status commits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.types import EntryId
from tests.daemon.conftest import World, task
from tests.support.waiting import wait_until


def test_cron_runs_again_when_it_fires(world: Callable[..., World]) -> None:
    # The clock starts at the real time: fire three minutes from now.
    minute = (datetime.now(UTC) + timedelta(minutes=3)).minute
    w = world({"nightly.yaml": task("nightly", schedule=f"{minute} * * * *")})
    w.settle()
    first = w.status("task/nightly")
    assert (first["phase"], first["lastRun"]["trigger"]) == ("Succeeded", "new")
    w.clock.advance(minutes=1)
    w.settle()
    assert w.status("task/nightly")["lastRun"]["id"] == first["lastRun"]["id"]
    w.clock.advance(minutes=3)  # the fire time has passed
    w.settle()
    second = w.status("task/nightly")
    assert second["lastRun"]["trigger"] == "schedule"
    assert second["lastRun"]["id"] != first["lastRun"]["id"]


def test_failed_run_is_retried_with_backoff_then_given_up(world: Callable[..., World]) -> None:
    w = world({"flaky.yaml": task("flaky", "import sys; sys.exit(4)", retries=2)})
    w.settle()
    assert w.status("task/flaky")["lastRun"]["attempt"] == 1
    assert "retrying at" in w.status("task/flaky")["message"]
    assert w.status("task/flaky")["phase"] == "Retrying"
    assert w.metric("reconciler_entry_phase", name="flaky", phase="Retrying") == 1
    assert w.metric("reconciler_entry_phase", name="flaky", phase="Failed") is None
    w.clock.advance(seconds=3)
    w.settle()
    assert w.status("task/flaky")["lastRun"]["attempt"] == 1  # backoff of 10 s not over
    w.clock.advance(seconds=15)
    w.settle()
    assert w.status("task/flaky")["lastRun"]["attempt"] == 2
    w.clock.advance(seconds=30)
    w.settle()
    final = w.status("task/flaky")
    assert (final["phase"], final["lastRun"]["attempt"], final["lastRun"]["exitCode"]) == (
        "Failed", 3, 4)
    assert final["message"].startswith("failed after 3 attempts")
    w.clock.advance(hours=1)
    w.settle()
    assert w.status("task/flaky")["lastRun"]["attempt"] == 3  # given up until it changes
    w.push({"flaky.yaml": task("flaky", "print('fixed')", retries=2)})
    w.settle()
    fixed = w.status("task/flaky")
    assert (fixed["phase"], fixed["lastRun"]["trigger"]) == ("Succeeded", "changed")


def test_dependents_run_after_their_dependency_and_again_when_it_reruns(
        world: Callable[..., World]) -> None:
    w = world({
        "prepare.yaml": task("prepare", schedule="0 * * * *"),
        "report.yaml": task("report", dependsOn=["task/prepare"]),
    })
    w.settle()
    prepare, report = w.status("task/prepare"), w.status("task/report")
    assert report["lastRun"]["startedAt"] >= prepare["lastRun"]["finishedAt"]
    assert report["dependencies"] == {"task/prepare": prepare["lastRun"]["id"]}
    w.clock.advance(hours=1)
    w.settle()
    assert w.status("task/report")["lastRun"]["trigger"] == "dependency"


def test_no_status_commit_when_nothing_changed(world: Callable[..., World]) -> None:
    w = world({"hello.yaml": task("hello")})
    w.settle()
    head = w.status_head()
    w.settle()
    w.clock.advance(minutes=3)
    w.settle()
    assert w.status_head() == head
    w.push({"README.md": "unrelated\n"})
    w.settle()
    # The README names the commit the declarations were read from; the entry's file is as was.
    assert w.status("task/hello")["lastRun"]["trigger"] == "new"


def test_status_on_the_tracked_branch_does_not_loop(world: Callable[..., World]) -> None:
    w = world({"hello.yaml": task("hello")}, status_branch="main")
    w.settle()
    head = w.status_head()
    for _ in range(3):
        w.settle()
    assert w.status_head() == head
    assert w.status("task/hello")["phase"] == "Succeeded"


def test_restart_with_a_fresh_state_dir_does_not_run_again(world: Callable[..., World],
                                                           tmp_path: Path) -> None:
    w = world({"once.yaml": task("once")})
    w.settle()
    run_id = w.status("task/once")["lastRun"]["id"]
    w.daemon.executor.close()
    import shutil

    shutil.rmtree(w.state)
    w.restart()
    w.settle()
    assert w.status("task/once")["lastRun"]["id"] == run_id


def test_unreachable_remote_is_reported_and_recovered(world: Callable[..., World],
                                                      tmp_path: Path) -> None:
    w = world({"hello.yaml": task("hello")})
    w.settle()
    hidden = w.bare.with_name("hidden.git")
    w.bare.rename(hidden)
    result = w.daemon.cycle(fetch=True)
    assert result.errors
    assert w.daemon.synced.is_set()  # readiness stays: the last sync was good
    hidden.rename(w.bare)
    w.clock.advance(minutes=10)  # past the backoff
    assert not w.daemon.cycle(fetch=True).errors


@pytest.mark.parametrize("bad", [
    "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: hello}\nspec:\n"
    "  command: [x]\n  timeout: 30x\n",
    "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: hello\n",
])
def test_a_typo_never_orphans_the_entry(world: Callable[..., World], bad: str) -> None:
    w = world({"hello.yaml": task("hello"), "other.yaml": task("other")})
    w.settle()
    w.push({"hello.yaml": bad, "other.yaml": task("other", "print('changed')")})
    w.settle()
    assert w.status("task/hello")["phase"] == "Invalid"
    assert w.status("task/other")["lastRun"]["trigger"] == "changed"


def test_standby_runs_nothing_and_takes_over_without_repeating(
        world: Callable[..., World], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    w = world({"once.yaml": task("once", f"open({str(ledger)!r}, 'a').write('ran\\n')")})
    standby_leads = [False]
    standby = World.__new__(World)
    standby.__dict__.update(w.__dict__)
    standby.state = tmp_path / "standby-state"
    standby.daemon = standby._daemon()
    standby.daemon.is_leader = lambda: standby_leads[0]
    try:
        standby.settle()  # reads (empty) status, loads declarations, starts nothing
        assert w.status_head() == ""  # and writes nothing
        w.settle()  # the leader runs the task
        assert ledger.read_text() == "ran\n"
        w.daemon.is_leader = lambda: False  # the leader stops leading ...
        standby_leads[0] = True  # ... and the standby takes over
        standby.settle()
        assert ledger.read_text() == "ran\n"  # not run twice
        assert w.status("task/once")["phase"] == "Succeeded"
    finally:
        standby.daemon.executor.close()


def test_a_running_task_that_prints_makes_no_status_commit_of_its_own(
        world: Callable[..., World], tmp_path: Path) -> None:
    """Status history records changes of phase, runs and errors; a log tail that grows while
    a run lasts is published with the next of those, not in a commit per poll."""
    go = [tmp_path / "go-1", tmp_path / "go-2"]
    code = ("import pathlib, time\n"
            + "".join(f"print('step {i}', flush=True)\n"
                      f"while not pathlib.Path({str(path)!r}).exists(): time.sleep(0.05)\n"
                      for i, path in enumerate(go)))
    w = world({"chatty.yaml": task("chatty", code)})
    w.daemon.cycle(fetch=True)
    started = _status_commits(w)
    assert w.status("task/chatty")["phase"] == "Running"
    for i, path in enumerate(go):
        wait_until(lambda i=i: f"step {i}" in _live_tail(w), what=f"step {i} in the live tail")
        path.touch()
    w.settle()
    assert _status_commits(w) == started + 1  # only the run's end
    assert w.user.git("--git-dir", str(w.bare), "log", "-1", "--format=%s",
                      w.status_branch).startswith("status: task/chatty Succeeded at ")
    assert "step 1" in w.status("task/chatty")["lastRun"]["logTail"]


def _live_tail(w: World) -> str:
    w.daemon.cycle(fetch=False)
    run = w.daemon.records[EntryId("task/chatty")].last_run
    return run.log_tail if run is not None else ""


def _status_commits(w: World) -> int:
    return int(w.user.git("--git-dir", str(w.bare), "rev-list", "--count", w.status_branch))
