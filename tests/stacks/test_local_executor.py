"""Stacks end to end through the local executor: a real Git repository materialized at each
commit, the runner under the executor's supervisor, the bundled engine, and the run's report
folded into the entry's status record the way the daemon does it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.declarations.entries import Entry
from reconciler.executors.local.executor import LocalExecutor
from reconciler.kinds.stack.launch import state_file
from reconciler.records import DriftInfo, EntryRecord, fold_report, new_record
from reconciler.runs import RESULT_MARKER, RunReport, RunRequest, run_id_for
from reconciler.source.tree import RepositoryWorkspace, open_repository
from reconciler.types import DriftState, Kind, Operation, Revision, RunState, SpecHash, Trigger
from tests.stacks.conftest import MODULE, SECRET_MODULE, set_state_input, stack_entry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.engine

CANARY = "canary-local-7e41b0"


class Repo:
    """A Git work tree the tests commit to, and the executor's workspace over it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._git("init", "-q", "-b", "main")
        self.workspace = RepositoryWorkspace(open_repository(root))

    def _git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=self.root, check=True, capture_output=True, text=True, timeout=30,
        )
        return done.stdout.strip()

    def commit(self, files: dict[str, str]) -> Revision:
        for name, text in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self._git("add", "-A")
        self._git("commit", "-q", "-m", "change")
        return Revision(self._git("rev-parse", "HEAD"))


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    (tmp_path / "repo").mkdir()
    return Repo(tmp_path / "repo")


@pytest.fixture
def executor(tmp_path: Path, repo: Repo) -> Iterator[LocalExecutor]:
    secrets = tmp_path / "secrets" / "api"
    secrets.mkdir(parents=True)
    (secrets / "token").write_text(CANARY)
    local = LocalExecutor(
        state_dir=tmp_path / "state", secrets_dir=tmp_path / "secrets",
        workspace=repo.workspace, kill_grace_seconds=2.0,
        base_env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, engine_fallback="terraform",
    )
    yield local
    local.close()


class Runs:
    def __init__(self, executor: LocalExecutor) -> None:
        self.executor = executor
        self.count = 0
        self.logs: list[str] = []

    def run(
        self, entry: Entry, operation: Operation, revision: Revision,
        trigger: Trigger = Trigger.CHANGED,
    ) -> RunReport:
        self.count += 1
        request = RunRequest(
            run_id=run_id_for(entry, operation, 1, salt=str(self.count)), entry=entry,
            operation=operation, trigger=trigger, attempt=1, revision=revision,
            requested_at=datetime.now(UTC),
        )
        self.executor.submit(request)

        def finished() -> RunReport | None:
            return next((report for report in self.executor.poll()
                         if report.run_id == request.run_id and report.state.finished), None)

        report = wait_until(finished, timeout=60, what=f"run {request.run_id} to finish")
        self.executor.acknowledge([report.run_id])
        self.logs.append(self.executor.logs(report.run_id))
        return report


def _entry(spec_hash: str) -> Entry:
    entry = stack_entry(
        vars={"x": "one"},
        secretEnv={"TF_VAR_token": {"secret": "api", "key": "token"}},
        drift={"schedule": "0 * * * *", "remediate": True},
    )
    return entry.model_copy(update={"spec_hash": SpecHash(spec_hash * 64)})


def _drift(record: EntryRecord) -> DriftInfo:
    assert record.drift is not None
    return record.drift


def _result(report: RunReport) -> dict[str, Any]:
    """The run's result as its result line had it."""
    assert report.result is not None, report
    return report.result.to_result()


def test_apply_change_drift_and_remediation(
    tmp_path: Path, repo: Repo, executor: LocalExecutor
) -> None:
    runs = Runs(executor)
    first = repo.commit({"stacks/web/main.tf": SECRET_MODULE, "README.md": "infra\n"})
    entry = _entry("a")
    record: EntryRecord = new_record(entry.id, Kind.STACK, entry.name)

    report = runs.run(entry, Operation.APPLY, first, Trigger.NEW)
    assert report.state is RunState.SUCCEEDED, runs.logs[-1]
    assert _result(report)["applied"] is True
    assert _result(report)["changes"] == {"add": 2, "change": 0, "destroy": 0}
    record = fold_report(record, report)
    assert record.engine == "terraform"
    assert record.engine_version
    state = state_file(tmp_path / "state", entry.name)
    assert state.exists()

    again = runs.run(entry, Operation.APPLY, first, Trigger.RETRY)
    assert again.state is RunState.SUCCEEDED, runs.logs[-1]
    assert _result(again)["applied"] is False
    assert _result(again)["changes"] == {"add": 0, "change": 0, "destroy": 0}

    second = repo.commit({"stacks/web/main.tf": SECRET_MODULE
                          + 'resource "terraform_data" "b" {\n  input = "b"\n}\n'})
    entry = _entry("b")
    report = runs.run(entry, Operation.APPLY, second)
    assert report.state is RunState.SUCCEEDED, runs.logs[-1]
    assert _result(report)["addresses"] == ["terraform_data.b"]
    record = fold_report(record, report)

    set_state_input(state, "terraform_data.a", "changed outside")
    drift = runs.run(entry, Operation.DRIFT, second, Trigger.DRIFT)
    assert drift.state is RunState.SUCCEEDED, runs.logs[-1]
    record = fold_report(record, drift)
    assert _drift(record).state is DriftState.DRIFTED
    assert (_drift(record).changes.add, _drift(record).changes.change) == (0, 1)
    assert _drift(record).addresses == ("terraform_data.a",)
    assert _drift(record).first_detected_at is not None

    remedy = runs.run(entry, Operation.APPLY, second, Trigger.REMEDIATE)
    assert remedy.state is RunState.SUCCEEDED, runs.logs[-1]
    assert _result(remedy)["applied"] is True
    record = fold_report(record, remedy)
    assert _drift(record).state is DriftState.IN_SYNC
    assert _drift(record).remediated_by == remedy.run_id

    check = runs.run(entry, Operation.DRIFT, second, Trigger.DRIFT)
    record = fold_report(record, check)
    assert _drift(record).state is DriftState.IN_SYNC
    assert _drift(record).first_detected_at is None

    tfstate = json.loads(state.read_text())
    assert CANARY in json.dumps(tfstate), "the engine got the secret"
    for text in [*runs.logs, *(r.log_tail for r in (report, drift, remedy, check))]:
        assert CANARY not in text
    assert CANARY not in record.model_dump_json()


def test_invalid_hcl_fails_with_the_engines_error_in_the_log_tail(
    repo: Repo, executor: LocalExecutor
) -> None:
    runs = Runs(executor)
    revision = repo.commit({"stacks/web/main.tf": MODULE + 'resource "terraform_data" {\n}\n'})
    entry = _entry("c")

    report = runs.run(entry, Operation.APPLY, revision, Trigger.NEW)

    assert report.state is RunState.FAILED
    assert report.exit_code == 1
    assert "Error: Missing name for resource" in report.log_tail
    assert RESULT_MARKER not in report.log_tail
    assert "Missing name for resource (main.tf line 8)" in _result(report)["error"]
    record = fold_report(new_record(entry.id, Kind.STACK, entry.name), report)
    assert record.last_run is not None
    assert record.last_run.state is RunState.FAILED
    assert record.last_success is None


def test_a_declared_engine_that_is_not_installed_fails_unless_a_fallback_is_allowed(
    tmp_path: Path, repo: Repo, executor: LocalExecutor
) -> None:
    revision = repo.commit({"stacks/web/main.tf": MODULE})
    entry = stack_entry(vars={"x": "one"})
    strict = LocalExecutor(
        state_dir=tmp_path / "strict", workspace=repo.workspace, kill_grace_seconds=2.0,
        base_env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    try:
        runs = Runs(strict)
        failed = runs.run(entry, Operation.APPLY, revision, Trigger.NEW)
    finally:
        strict.close()

    assert failed.state is RunState.FAILED
    assert _result(failed)["error"].startswith(
        "engine opentofu is not installed (no `tofu` on PATH)")
    assert "--engine-fallback terraform" in failed.log_tail
    assert failed.message == _result(failed)["error"], "the status says why, not the exit code"
    record = fold_report(new_record(entry.id, Kind.STACK, entry.name), failed)
    assert record.engine is None, "no engine ran"

    allowed = Runs(executor)  # the fixture's executor allows terraform
    report = allowed.run(entry, Operation.APPLY, revision, Trigger.NEW)
    assert report.state is RunState.SUCCEEDED, allowed.logs[-1]
    record = fold_report(record, report)
    assert (record.engine, record.engine_version) == ("terraform", _result(report)["version"])
    assert (f"engine opentofu is not installed; using terraform {record.engine_version} as "
            "allowed by --engine-fallback") in allowed.logs[-1]
