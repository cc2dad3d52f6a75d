"""Local executor: the daemon or a run's supervisor dies, and no run is lost or repeated."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from reconciler.executors.local.history import run_dir
from reconciler.executors.local.runner import RESULT_FILE
from reconciler.runs import RunRequest
from reconciler.types import RunState
from tests.executors.conftest import (
    LocalHarness,
    report_of,
    request_for,
    supervisor_pid,
    task_entry,
    wait_for_run,
)
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def start_daemon(
    daemons: list[subprocess.Popen[str]],
    local: LocalHarness,
    requests: Sequence[RunRequest],
    *,
    max_parallel: int = 4,
) -> subprocess.Popen[str]:
    files = []
    for request in requests:
        path = local.state_dir.parent / f"{request.run_id}.json"
        path.write_text(request.model_dump_json())
        files.append(str(path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.executors.executor_process",
         str(local.state_dir), str(max_parallel), *files],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    daemons.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "submitted\n"
    return proc


def counted_task(name: str, counter: Path, script: str, timeout: str = "60s") -> RunRequest:
    """A run that appends a line to `counter` when it starts, so repeats are visible."""
    entry = task_entry(
        name, ["sh", "-c", f'echo "$RECONCILER_RUN_ID" >> "$COUNTER"; {script}'],
        env={"COUNTER": str(counter)}, timeout=timeout,
    )
    return request_for(entry)


def starts(counter: Path) -> list[str]:
    return counter.read_text().split() if counter.exists() else []


def test_daemon_killed_mid_run_then_restarted(
    local: LocalHarness, daemons: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    request = counted_task("survivor", counter, "sleep 1; echo finished; exit 3")
    daemon = start_daemon(daemons, local, [request])
    wait_until(lambda: starts(counter), what="a run to start")

    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    executor = local.make()
    executor.submit(request)  # a restarted daemon may ask again: the run is adopted

    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.FAILED
    assert report.exit_code == 3
    assert report.log_tail.splitlines()[-1] == "finished"
    assert report_of(executor, request.run_id) == report
    executor.acknowledge([request.run_id])
    assert executor.poll() == []
    executor.close()

    again = local.make()
    again.submit(request)  # asked once more after it was recorded: reported, never rerun
    assert [(r.run_id, r.state) for r in again.poll()] == [(request.run_id, RunState.FAILED)]
    assert starts(counter) == [request.run_id]


def test_run_that_finished_while_the_daemon_was_down_is_reported(
    local: LocalHarness, daemons: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    request = counted_task("quick", counter, "echo done")
    daemon = start_daemon(daemons, local, [request])
    wait_until((run_dir(local.state_dir, request.run_id) / RESULT_FILE).exists,
               what="the run's result file")
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()

    executor = local.make()
    [report] = executor.poll()

    assert report.run_id == request.run_id
    assert report.state is RunState.SUCCEEDED
    assert "done" in report.log_tail
    assert starts(counter) == [request.run_id]


def test_queued_runs_survive_a_daemon_kill(
    local: LocalHarness, daemons: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    first = counted_task("first", counter, "sleep 1")
    second = counted_task("second", counter, "echo second")
    daemon = start_daemon(daemons, local, [first, second], max_parallel=1)
    wait_until(lambda: starts(counter), what="a run to start")
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()

    executor = local.make(max_parallel=1)
    queued = report_of(executor, second.run_id)
    assert queued is not None
    assert queued.state is RunState.PENDING

    assert wait_for_run(executor, first.run_id).state is RunState.SUCCEEDED
    assert wait_for_run(executor, second.run_id).state is RunState.SUCCEEDED
    assert starts(counter) == [first.run_id, second.run_id]


def test_supervisor_killed_means_interrupted_and_its_command_is_stopped(
    local: LocalHarness,
) -> None:
    executor = local.make()
    request = request_for(task_entry("orphan", ["sh", "-c", "echo pid=$$; sleep 60"]))
    executor.submit(request)
    running = wait_for_run(executor, request.run_id, lambda r: "pid=" in r.log_tail)
    match = re.search(r"pid=(\d+)", running.log_tail)
    assert match is not None

    os.kill(supervisor_pid(executor, local.state_dir, request.run_id), signal.SIGKILL)

    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.INTERRUPTED
    assert "interrupted" in report.message
    wait_until(lambda: not local.process_alive(int(match.group(1))), timeout=5,
               what="the run's process to be gone")
    assert executor.free_slots() == 4


def test_supervisor_stopped_by_sigterm_stops_its_command(local: LocalHarness) -> None:
    executor = local.make()
    request = request_for(task_entry(
        "stopped", ["sh", "-c", "trap 'echo cleaning up; exit 9' TERM; echo ready; "
                                "while :; do sleep 0.1; done"],
    ))
    executor.submit(request)
    wait_for_run(executor, request.run_id, lambda r: "ready" in r.log_tail)

    os.kill(supervisor_pid(executor, local.state_dir, request.run_id), signal.SIGTERM)

    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.INTERRUPTED
    assert "SIGTERM" in report.message
    assert "cleaning up" in report.log_tail
