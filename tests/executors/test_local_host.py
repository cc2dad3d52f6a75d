"""Local executor: one supervisor host per state dir forks every run's supervisor; it outlives
the daemon, a dead one is replaced, and the end of a run is told at once."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from reconciler.executors.local.journal import Journal
from reconciler.executors.local.supervision import SupervisorHost
from reconciler.runs import RunRequest
from reconciler.types import RunState
from tests.executors.conftest import (
    LocalHarness,
    request_for,
    supervisor_pid,
    task_entry,
    wait_for_run,
)
from tests.support.processes import process_alive
from tests.support.waiting import wait_until


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def waiting_run(name: str, release: Path) -> RunRequest:
    """A run that says it started, then goes on until `release` exists."""
    return request_for(task_entry(name, [
        "sh", "-c", 'echo started; while [ ! -e "$RELEASE" ]; do sleep 0.05; done; echo done'],
        env={"RELEASE": str(release)}))


def test_every_supervisor_is_forked_by_one_host(local: LocalHarness, tmp_path: Path) -> None:
    executor = local.make()
    release = tmp_path / "release"
    runs = [waiting_run(f"forked-{i}", release) for i in range(2)]
    for request in runs:
        executor.submit(request)
    for request in runs:
        wait_for_run(executor, request.run_id, lambda r: "started" in r.log_tail)

    supervisors = [supervisor_pid(executor, local.state_dir, r.run_id) for r in runs]
    hosts = {parent_of(pid) for pid in supervisors}
    assert len(hosts) == 1
    [host] = hosts
    assert host != os.getpid()
    # Forked, not started afresh: each supervisor runs the host's own program.
    host_argv = Path(f"/proc/{host}/cmdline").read_bytes()
    assert b"run_supervisor" in host_argv
    assert all(Path(f"/proc/{pid}/cmdline").read_bytes() == host_argv for pid in supervisors)

    release.touch()
    for request in runs:
        assert wait_for_run(executor, request.run_id).state is RunState.SUCCEEDED


def test_a_killed_host_leaves_its_runs_going_and_is_replaced(
    local: LocalHarness, tmp_path: Path
) -> None:
    executor = local.make()
    release = tmp_path / "release"
    first = waiting_run("outlives-host", release)
    executor.submit(first)
    wait_for_run(executor, first.run_id, lambda r: "started" in r.log_tail)
    host = parent_of(supervisor_pid(executor, local.state_dir, first.run_id))

    os.kill(host, signal.SIGKILL)
    wait_until(lambda: not process_alive(host), what="the host to die")
    release.touch()

    report = wait_for_run(executor, first.run_id)
    assert report.state is RunState.SUCCEEDED
    assert report.log_tail.splitlines()[-1] == "done"

    second = request_for(task_entry("after-host", ["sh", "-c", "echo again; sleep 0.5"]))
    executor.submit(second)
    wait_for_run(executor, second.run_id, lambda r: "again" in r.log_tail)
    replacement = parent_of(supervisor_pid(executor, local.state_dir, second.run_id))
    assert replacement != host
    assert process_alive(replacement)
    assert wait_for_run(executor, second.run_id).state is RunState.SUCCEEDED


def test_a_run_the_host_died_before_answering_is_started_by_the_next(
    local: LocalHarness, tmp_path: Path
) -> None:
    """The host is stopped while a request waits for it, then killed: the run it never read
    is asked of a new host, once, and runs."""
    executor = local.make()
    release = tmp_path / "release"
    first = waiting_run("keeps-host", release)
    executor.submit(first)
    wait_for_run(executor, first.run_id, lambda r: "started" in r.log_tail)
    host = parent_of(supervisor_pid(executor, local.state_dir, first.run_id))

    os.kill(host, signal.SIGSTOP)
    unread = waiting_run("unread", release)
    executor.submit(unread)
    executor.flush()
    os.kill(host, signal.SIGKILL)
    wait_until(lambda: not process_alive(host), what="the host to die")

    wait_for_run(executor, unread.run_id, lambda r: "started" in r.log_tail)
    assert parent_of(supervisor_pid(executor, local.state_dir, unread.run_id)) != host
    release.touch()
    for request in (first, unread):
        report = wait_for_run(executor, request.run_id)
        assert report.state is RunState.SUCCEEDED
        assert report.log_tail.splitlines() == ["started", "done"]


def test_a_restarted_executor_uses_the_host_still_running(
    local: LocalHarness, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    first = waiting_run("before-restart", release)
    before = local.make()
    before.submit(first)
    wait_for_run(before, first.run_id, lambda r: "started" in r.log_tail)
    host = parent_of(supervisor_pid(before, local.state_dir, first.run_id))
    before.close()

    after = local.make()
    second = waiting_run("after-restart", release)
    after.submit(second)
    wait_for_run(after, second.run_id, lambda r: "started" in r.log_tail)

    assert parent_of(supervisor_pid(after, local.state_dir, second.run_id)) == host
    release.touch()
    for request in (first, second):
        assert wait_for_run(after, request.run_id).state is RunState.SUCCEEDED


def test_the_end_of_a_run_is_told_at_once(local: LocalHarness, tmp_path: Path) -> None:
    """Without a poll: the callback is what says the run ended, for a run started by this
    executor and for one adopted from the executor before it."""
    release = tmp_path / "release"
    adopted = waiting_run("adopted", release)
    before = local.make()
    before.submit(adopted)
    wait_for_run(before, adopted.run_id, lambda r: "started" in r.log_tail)
    before.close()

    executor = local.make()
    ended = threading.Event()
    assert executor.on_change(ended.set)
    release.touch()
    wait_until(ended.is_set, what="the adopted run's end to be told")
    assert wait_for_run(executor, adopted.run_id).state is RunState.SUCCEEDED

    ended.clear()
    fresh = request_for(task_entry("fresh", ["sh", "-c", "echo quick"]))
    executor.submit(fresh)
    executor.flush()
    wait_until(ended.is_set, what="the new run's end to be told")
    assert wait_for_run(executor, fresh.run_id).state is RunState.SUCCEEDED


def test_a_cycles_runs_are_all_recorded_before_any_starts(
    local: LocalHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As each supervisor is asked for, the journal (read by another connection, so only
    what is committed) holds every run submitted with it, and this one as Running."""
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    start_all = SupervisorHost.start_all

    def checked(host: SupervisorHost, runs: Sequence[tuple[str, Path, Mapping[str, str]]]
                ) -> list[tuple[str, Exception]]:
        reader = Journal(local.state_dir, readonly=True)
        try:
            rows = [(r.run_id, r.state.value) for r in reader.unacknowledged()]
        finally:
            reader.close()
        seen.extend((folder.name, rows) for _, folder, _ in runs)
        return start_all(host, runs)

    monkeypatch.setattr(SupervisorHost, "start_all", checked)
    executor = local.make()
    runs = [request_for(task_entry(f"recorded-{i}", ["true"])) for i in range(3)]
    for request in runs:
        executor.submit(request)
    executor.flush()

    assert [name for name, _ in seen] == [r.run_id for r in runs]
    for name, rows in seen:
        assert sorted(rows) == sorted((r.run_id, RunState.RUNNING.value) for r in runs), name
    for request in runs:
        assert wait_for_run(executor, request.run_id).state is RunState.SUCCEEDED
