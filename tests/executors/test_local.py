"""Local executor behaviour beyond the shared protocol suite."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.declarations.entries import Entry, Location
from reconciler.declarations.models import StackSpec
from reconciler.executors.local.executor import LocalExecutor, StateDirBusyError
from reconciler.executors.local.history import RUNS_DIR, WORK_DIR, RunHistory, run_dir, work_dir
from reconciler.executors.local.sweeper import ASIDE_PREFIX
from reconciler.runs import RunRequest
from reconciler.types import Kind, Operation, RunId, RunState, SpecHash, Trigger, entry_id
from tests.executors.conftest import (
    REVISION,
    LocalHarness,
    report_of,
    request_for,
    task_entry,
    wait_for_run,
)
from tests.support.waiting import wait_until

CANARY = "canary-Yx2p-2718281828"


def test_command_not_found_fails_with_127(local: LocalHarness) -> None:
    executor = local.make()
    request = request_for(task_entry("missing", ["no-such-program-here", "--flag"]))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert report.exit_code == 127
    assert report.message.startswith("command not found: no-such-program-here")
    assert "command not found" in report.log_tail


def test_file_that_is_not_a_program_fails_with_126(local: LocalHarness) -> None:
    executor = local.make()
    request = request_for(task_entry("not-exec", ["./data.txt"], files={"data.txt": "text\n"}))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert report.exit_code == 126


def test_run_environment_is_private_and_minimal(
    local: LocalHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_GIT_PASSWORD", "daemon-only-value")
    executor = local.make()
    entry = task_entry(
        "env",
        ["sh", "-c", 'env; echo "cwd=$(pwd)"; stat -c "%a %n" run.sh nested nested/data.txt;'
                     ' ./run.sh; touch "$HOME/h" "$TMPDIR/t" && echo writable'],
        files={"run.sh": "#!/bin/sh\necho script ran\n", "nested/data.txt": "x"},
    )
    request = request_for(entry)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)
    log = executor.logs(request.run_id)

    assert report.state is RunState.SUCCEEDED, log
    assert "daemon-only-value" not in log
    work = work_dir(local.state_dir, request.run_id)
    lines = log.splitlines()
    assert f"cwd={work / 'task'}" in lines
    assert f"HOME={work / 'home'}" in lines
    assert f"TMPDIR={work / 'tmp'}" in lines
    assert "TZ=UTC" in lines
    assert f"RECONCILER_ENTRY={entry.id}" in lines
    assert f"RECONCILER_REVISION={REVISION}" in lines
    assert "RECONCILER_ATTEMPT=1" in lines
    assert {"555 run.sh", "555 nested", "555 nested/data.txt"} <= set(lines)
    assert "script ran" in lines
    assert "writable" in lines


def test_secret_values_never_reach_the_disk(local: LocalHarness) -> None:
    local.add_secret("creds", "token", CANARY)
    executor = local.make()
    request = request_for(task_entry(
        "secretive", ["sh", "-c", 'echo "token is $TOKEN"; sleep 0.2'],
        secret_env={"TOKEN": ("creds", "token")},
    ))
    executor.submit(request)
    wait_for_run(executor, request.run_id, lambda r: "token is" in r.log_tail)

    def leaked() -> list[Path]:
        return [
            path for path in local.state_dir.rglob("*")
            if path.is_file() and CANARY.encode() in path.read_bytes()
        ]

    assert leaked() == []
    assert wait_for_run(executor, request.run_id).state is RunState.SUCCEEDED
    executor.close()
    assert leaked() == []


def test_secret_read_byte_for_byte(local: LocalHarness) -> None:
    local.add_secret("exact", "value", "with newline\n")
    executor = local.make()
    request = request_for(task_entry(
        "exact", ["sh", "-c", 'printf "[%s]" "$VALUE" | od -c | head -2'],
        secret_env={"VALUE": ("exact", "value")},
    ))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert "\\n   ]" in report.log_tail


def test_missing_secrets_dir_is_a_clear_failure(tmp_path: Path) -> None:
    with LocalExecutor(state_dir=tmp_path / "state") as executor:
        request = request_for(task_entry(
            "no-dir", ["true"], secret_env={"TOKEN": ("creds", "token")}
        ))
        executor.submit(request)
        report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.FAILED
    assert "--secrets-dir" in report.message
    assert "TOKEN" in report.message


def test_runs_beyond_max_parallel_wait_their_turn(local: LocalHarness, tmp_path: Path) -> None:
    spans = tmp_path / "spans"
    executor = local.make(max_parallel=1)
    requests = [
        request_for(task_entry(
            f"queued-{i}",
            ["sh", "-c", 'a=$(date +%s.%N); sleep 0.3; echo "$a $(date +%s.%N)" >> "$SPANS"'],
            env={"SPANS": str(spans)},
        ))
        for i in range(3)
    ]
    for request in requests:
        executor.submit(request)

    states = [report_of(executor, r.run_id).state for r in requests]  # type: ignore[union-attr]
    assert states == [RunState.RUNNING, RunState.PENDING, RunState.PENDING]
    assert executor.free_slots() == 0
    for request in requests:
        assert wait_for_run(executor, request.run_id).state is RunState.SUCCEEDED

    intervals = sorted(tuple(map(float, line.split())) for line in spans.read_text().splitlines())
    assert len(intervals) == 3
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start


def test_timeout_asks_politely_first(local: LocalHarness) -> None:
    executor = local.make()
    request = request_for(task_entry(
        "polite",
        ["sh", "-c", "trap 'echo stopping cleanly; exit 4' TERM; while :; do sleep 0.1; done"],
        timeout="1s",
    ))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.TIMED_OUT
    assert report.message == "timed out after 1s"
    assert "stopping cleanly" in report.log_tail


def test_work_dir_removed_on_acknowledge_and_on_restart(local: LocalHarness) -> None:
    executor = local.make()
    first = request_for(task_entry("wd-a", ["true"]))
    second = request_for(task_entry("wd-b", ["true"]))
    for request in (first, second):
        executor.submit(request)
        wait_for_run(executor, request.run_id)
        assert work_dir(local.state_dir, request.run_id).is_dir()

    executor.acknowledge([first.run_id])
    assert not work_dir(local.state_dir, first.run_id).exists()
    # Set aside at once, removed soon after.
    works = local.state_dir / WORK_DIR
    wait_until(lambda: sorted(p.name for p in works.iterdir()) == [second.run_id],
               what="the acknowledged run's work folder to be removed")
    executor.close()
    # What a stopped executor had set aside and not removed yet goes at the next start.
    aside_run = local.state_dir / RUNS_DIR / f"{ASIDE_PREFIX}1-1"
    for leftover in (works / f"{ASIDE_PREFIX}1-0", aside_run):
        (leftover / "home").mkdir(parents=True)

    restarted = local.make()
    assert list(works.iterdir()) == []
    assert not aside_run.exists()
    assert [r.run_id for r in restarted.poll()] == [second.run_id]
    assert "wd-b" not in restarted.logs(second.run_id)


def test_old_runs_are_pruned_per_entry(local: LocalHarness) -> None:
    executor = local.make(keep_runs=2)
    entry = task_entry("pruned", ["sh", "-c", 'echo "run $RECONCILER_RUN_ID"'])
    requests = [request_for(entry, trigger=Trigger.SCHEDULE, salt=str(i)) for i in range(4)]
    for request in requests:
        executor.submit(request)
        wait_for_run(executor, request.run_id)
        executor.acknowledge([request.run_id])

    kept = [r.run_id for r in requests if run_dir(local.state_dir, r.run_id).exists()]
    assert kept == [r.run_id for r in requests[-2:]]
    assert executor.logs(requests[0].run_id) == ""
    latest = executor.latest_run(entry.id)
    assert latest is not None
    assert latest.run_id == requests[-1].run_id


def test_history_reads_without_a_daemon(local: LocalHarness, tmp_path: Path) -> None:
    assert RunHistory(tmp_path / "nothing-here").latest_run(entry_id(Kind.TASK, "x")) is None
    assert not (tmp_path / "nothing-here").exists()

    executor = local.make()
    entry = task_entry("history", ["sh", "-c", "echo first line; sleep 0.3; echo last line"])
    request = request_for(entry)
    executor.submit(request)
    wait_for_run(executor, request.run_id, lambda r: "first line" in r.log_tail)

    history = RunHistory(local.state_dir)
    try:
        running = history.latest_run(entry.id)
        assert running is not None
        assert running.state is RunState.RUNNING
        wait_for_run(executor, request.run_id)
        executor.close()
        finished = history.latest_run(entry.id)
        assert finished is not None
        assert finished.state is RunState.SUCCEEDED
        assert history.logs(request.run_id).splitlines() == ["first line", "last line"]
        assert history.latest_run(entry_id(Kind.TASK, "other")) is None
    finally:
        history.close()


def test_one_executor_per_state_dir(local: LocalHarness) -> None:
    first = local.make()
    with pytest.raises(StateDirBusyError, match="in use by another reconciler process"):
        local.make()
    first.close()
    local.make()


def test_bad_task_file_name_fails_the_run_not_the_executor(local: LocalHarness) -> None:
    executor = local.make()
    request = request_for(task_entry(
        "clash", ["true"], files={"conf": "a", "conf/inner.txt": "b"}
    ))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert "conf" in report.message


def test_cancelling_a_queued_run(local: LocalHarness) -> None:
    executor = local.make(max_parallel=1)
    blocker = request_for(task_entry("blocker", ["sleep", "0.5"]))
    queued = request_for(task_entry("waiting", ["sh", "-c", "echo should-not-run"]))
    executor.submit(blocker)
    executor.submit(queued)

    executor.cancel(queued.run_id)

    assert wait_for_run(executor, blocker.run_id).state is RunState.SUCCEEDED
    report = report_of(executor, queued.run_id)
    assert report is not None
    assert (report.state, report.message) == (RunState.FAILED, "cancelled")
    assert executor.logs(queued.run_id) == ""


def test_stack_without_a_workspace_fails_clearly(local: LocalHarness) -> None:
    spec = StackSpec.model_validate({"path": "stacks/net"})
    entry = Entry(
        id=entry_id(Kind.STACK, "net"), kind=Kind.STACK, name="net", spec=spec,
        spec_hash=SpecHash("f" * 64), location=Location(path="net.yaml"), timeout_seconds=60,
    )
    request = RunRequest(
        run_id=RunId("net-a1-0123456789"), entry=entry, operation=Operation.APPLY,
        trigger=Trigger.NEW, attempt=1, revision=REVISION, requested_at=datetime.now(UTC),
    )
    executor = local.make()
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert "workspace" in report.message


def test_invalid_run_id_is_refused(local: LocalHarness) -> None:
    executor = local.make()
    request = request_for(task_entry("odd", ["true"])).model_copy(update={"run_id": "../escape"})
    with pytest.raises(ValueError, match="run id"):
        executor.submit(request)


def test_log_files_are_written_as_output_arrives(local: LocalHarness) -> None:
    executor = local.make()
    request = request_for(task_entry("stream", ["sh", "-c", "echo early; sleep 30; echo late"]))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id, lambda r: "early" in r.log_tail)

    assert report.state is RunState.RUNNING
    executor.cancel(request.run_id)


@pytest.mark.parametrize("make_secret", [False, True], ids=["no folder", "no key"])
def test_a_missing_secret_is_named_without_the_hosts_paths(local: LocalHarness,
                                                           make_secret: bool) -> None:
    """The message goes to the status branch: it names the secret and key, and the file under
    --secrets-dir, never where that folder is on the daemon's machine."""
    if make_secret:
        local.add_secret("report-creds", "other", "x")
    executor = local.make()
    request = request_for(task_entry("needs", ["true"],
                                     secret_env={"TOKEN": ("report-creds", "token")}))
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert "'report-creds'" in report.message
    assert "<secrets-dir>/report-creds" in report.message
    assert str(local.secrets_dir) not in report.message
