"""The executor protocol, as the daemon relies on it; run against every executor."""

from __future__ import annotations

import re
import time
from pathlib import Path

from reconciler.redact import MASK
from reconciler.types import RunState, SpecHash, Trigger
from tests.executors.conftest import (
    REVISION,
    Harness,
    report_of,
    request_for,
    task_entry,
    wait_for_run,
)
from tests.support.waiting import wait_until

CANARY = "canary-Zq8v-3141592653"


def test_success_sees_files_and_env(harness: Harness) -> None:
    executor = harness.make()
    entry = task_entry(
        "greet",
        ["sh", "-c"],
        args=[
            'cat data/input.txt; python3 tool.py; echo "greeting=$GREETING run=$RECONCILER_RUN_ID"'
        ],
        files={"data/input.txt": "from a file\n", "tool.py": "print('python ran', 6 * 7)\n"},
        env={"GREETING": "hello"},
    )
    request = request_for(entry, trigger=Trigger.CHANGED, attempt=2)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.SUCCEEDED
    assert report.exit_code == 0
    assert report.entry_id == entry.id
    assert report.spec_hash == entry.spec_hash
    assert (report.trigger, report.attempt, report.revision) == (Trigger.CHANGED, 2, REVISION)
    assert report.started_at is not None
    assert report.finished_at is not None
    assert report.started_at <= report.finished_at
    lines = report.log_tail.splitlines()
    assert "from a file" in lines
    assert "python ran 42" in lines
    assert f"greeting=hello run={request.run_id}" in lines
    assert "python ran 42" in executor.logs(request.run_id)


def test_failure_reports_exit_code_and_last_lines(harness: Harness) -> None:
    executor = harness.make()
    script = 'for i in $(seq 1 100); do echo "line $i"; done; exit 3'
    entry = task_entry("fails", ["sh", "-c", script])
    request = request_for(entry)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert report.exit_code == 3
    assert "3" in report.message
    lines = report.log_tail.splitlines()
    assert len(lines) == 40
    assert lines[-1] == "line 100"
    assert "line 60" not in lines
    full = executor.logs(request.run_id).splitlines()
    assert "line 1" in full
    assert "line 100" in full


def test_timeout_stops_the_whole_process_tree(harness: Harness) -> None:
    executor = harness.make()
    # The child starts a grandchild in the background; both must be gone after the timeout.
    script = 'sh -c "sleep 60 & echo grandchild=\\$!; wait"; echo never'
    entry = task_entry("slow", ["sh", "-c", script], timeout="1s")
    request = request_for(entry)
    started = time.monotonic()
    executor.submit(request)

    running = wait_for_run(executor, request.run_id, lambda r: "grandchild=" in r.log_tail)
    match = re.search(r"grandchild=(\d+)", running.log_tail)
    assert match is not None
    grandchild = int(match.group(1))
    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.TIMED_OUT
    assert "timed out" in report.message
    assert time.monotonic() - started < 10
    assert "never" not in executor.logs(request.run_id)
    wait_until(lambda: harness.process_alive(grandchild) in (False, None), timeout=5,
               what="the grandchild to be gone")


def test_missing_secret_fails_with_a_clear_message(harness: Harness) -> None:
    harness.add_secret("api-creds", "other-key", CANARY)
    executor = harness.make()
    entry = task_entry(
        "needs-secret",
        ["sh", "-c", "echo started"],
        secret_env={"API_TOKEN": ("api-creds", "token"), "OTHER": ("api-creds", "other-key")},
    )
    request = request_for(entry)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert "api-creds" in report.message
    assert "token" in report.message
    assert "API_TOKEN" in report.message
    assert "started" not in report.log_tail
    for text in (report.message, report.log_tail, executor.logs(request.run_id)):
        assert CANARY not in text


def test_secret_values_are_masked_in_output(harness: Harness) -> None:
    harness.add_secret("db", "password", CANARY)
    executor = harness.make()
    entry = task_entry(
        "leaky",
        ["sh", "-c", 'echo "plain $DB_PASSWORD"; printf "glued-%s-glued\\n" "$DB_PASSWORD" >&2'],
        secret_env={"DB_PASSWORD": ("db", "password")},
    )
    request = request_for(entry)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.SUCCEEDED
    logs = executor.logs(request.run_id)
    for text in (report.log_tail, logs, report.message):
        assert CANARY not in text
    assert f"plain {MASK}" in logs
    assert f"glued-{MASK}-glued" in report.log_tail


def test_max_parallel_is_respected(harness: Harness) -> None:
    executor = harness.make(max_parallel=2)
    assert executor.free_slots() == 2
    requests = [
        request_for(task_entry(f"par-{i}", ["sh", "-c", "sleep 1.5"])) for i in range(2)
    ]
    for request in requests:
        executor.submit(request)

    assert executor.free_slots() == 0
    reports = executor.poll()
    assert sorted(r.run_id for r in reports) == sorted(r.run_id for r in requests)
    assert all(not r.state.finished for r in reports)

    for request in requests:
        assert wait_for_run(executor, request.run_id).state is RunState.SUCCEEDED
    assert executor.free_slots() == 2


def test_resubmitting_a_run_id_does_not_start_it_again(harness: Harness) -> None:
    executor = harness.make()
    entry = task_entry("once", ["sh", "-c", "echo started-once; sleep 0.5"])
    request = request_for(entry)

    executor.submit(request)
    executor.submit(request)
    wait_for_run(executor, request.run_id, lambda r: "started-once" in r.log_tail)
    executor.submit(request)
    report = wait_for_run(executor, request.run_id)
    executor.submit(request)

    assert report.state is RunState.SUCCEEDED
    assert executor.logs(request.run_id).count("started-once") == 1
    assert report_of(executor, request.run_id) is not None  # still reported exactly once


def test_acknowledged_runs_are_no_longer_reported(harness: Harness) -> None:
    executor = harness.make()
    first = request_for(task_entry("ack-a", ["sh", "-c", "echo a"]))
    second = request_for(task_entry("ack-b", ["sh", "-c", "echo b"]))
    executor.submit(first)
    executor.submit(second)
    wait_for_run(executor, first.run_id)
    wait_for_run(executor, second.run_id)

    executor.acknowledge([first.run_id])

    assert [r.run_id for r in executor.poll()] == [second.run_id]
    assert "a" in executor.logs(first.run_id).splitlines()
    executor.acknowledge([second.run_id, second.run_id])
    assert executor.poll() == []


def test_acknowledging_a_running_run_changes_nothing(harness: Harness) -> None:
    executor = harness.make()
    request = request_for(task_entry("busy", ["sh", "-c", "sleep 0.5"]))
    executor.submit(request)

    executor.acknowledge([request.run_id])

    assert wait_for_run(executor, request.run_id).state is RunState.SUCCEEDED


def test_cancel_stops_the_run_and_reports_it_failed(harness: Harness) -> None:
    executor = harness.make()
    entry = task_entry("cancelled", ["sh", "-c", "echo pid=$$; sleep 60"])
    request = request_for(entry)
    executor.submit(request)
    running = wait_for_run(executor, request.run_id, lambda r: "pid=" in r.log_tail)
    match = re.search(r"pid=(\d+)", running.log_tail)
    assert match is not None

    executor.cancel(request.run_id)

    report = report_of(executor, request.run_id)
    assert report is not None
    assert report.state is RunState.FAILED
    assert report.message == "cancelled"
    wait_until(lambda: harness.process_alive(int(match.group(1))) in (False, None), timeout=5,
               what="the run's process to be gone")
    executor.cancel(request.run_id)  # cancelling again is harmless


def test_unknown_runs(harness: Harness) -> None:
    executor = harness.make()
    assert executor.poll() == []
    assert executor.logs(request_for(task_entry("nope", ["true"])).run_id) == ""
    executor.cancel(request_for(task_entry("nope", ["true"])).run_id)
    executor.acknowledge([request_for(task_entry("nope", ["true"])).run_id])


def test_latest_is_what_durably_succeeded_even_after_acknowledgement_and_a_restart(
    harness: Harness, tmp_path: Path
) -> None:
    marker = tmp_path / "ran-once"
    # The same version succeeds the first time and fails the second (a cron run, say).
    entry = task_entry("kept", ["sh", "-c", f"echo run; test ! -e {marker} && touch {marker}"])
    executor = harness.make()
    first = request_for(entry)
    executor.submit(first)
    assert wait_for_run(executor, first.run_id).state is RunState.SUCCEEDED
    executor.acknowledge([first.run_id])
    second = request_for(entry, trigger=Trigger.SCHEDULE, salt="2024-05-01T03:00:00+00:00")
    executor.submit(second)
    assert wait_for_run(executor, second.run_id).state is RunState.FAILED
    executor.acknowledge([second.run_id])
    busy = task_entry("busy", ["sh", "-c", "echo busy; sleep 30"])
    running = request_for(busy)
    executor.submit(running)
    wait_for_run(executor, running.run_id, lambda r: "busy" in r.log_tail)
    executor.close()

    restarted = harness.make()
    found = restarted.latest({entry.id: entry.spec_hash, busy.id: busy.spec_hash})

    assert [(r.run_id, r.state) for r in found] == [
        (first.run_id, RunState.SUCCEEDED), (second.run_id, RunState.FAILED)]
    assert found[0].entry_id == entry.id
    assert found[0].spec_hash == entry.spec_hash
    assert found[0].exit_code == 0
    assert "run" in found[0].log_tail.splitlines()
    assert found[0].finished_at is not None
    assert restarted.latest({entry.id: SpecHash("0" * 64)}) == []  # another version
    assert restarted.latest({}) == []
    assert [r.run_id for r in restarted.poll()] == [running.run_id]  # nothing started
    restarted.cancel(running.run_id)


def test_latest_leaves_out_the_runs_the_records_show(harness: Harness) -> None:
    executor = harness.make()
    entry = task_entry("shown", ["sh", "-c", "echo once"])
    request = request_for(entry)
    executor.submit(request)
    wait_for_run(executor, request.run_id)

    assert [r.run_id for r in executor.latest({entry.id: entry.spec_hash})] == [request.run_id]
    assert executor.latest({entry.id: entry.spec_hash}, {request.run_id}) == []


def test_resubmitting_an_acknowledged_run_reports_it_again_without_running_it(
    harness: Harness,
) -> None:
    executor = harness.make()
    entry = task_entry("again", ["sh", "-c", "echo ran-once"])
    request = request_for(entry)
    executor.submit(request)
    wait_for_run(executor, request.run_id)
    executor.acknowledge([request.run_id])
    assert executor.poll() == []

    executor.submit(request)  # a daemon whose record of the run was lost plans it again

    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.SUCCEEDED
    assert executor.logs(request.run_id).count("ran-once") == 1
    executor.acknowledge([request.run_id])
    assert executor.poll() == []
