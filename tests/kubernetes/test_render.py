"""`reconciler render KIND/NAME`: the exact objects the kubernetes executor would create, as
YAML a person can review and `kubectl` can read; clear errors for entries that are missing,
invalid or cannot run on Kubernetes."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from reconciler.cli import build_parser
from reconciler.commands import render
from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.runs import run_id_for
from reconciler.types import Operation
from tests.support.gitservers import git

SAMPLE = Path(__file__).resolve().parents[2] / "sample-repo"


def rendered(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["render", *argv])
    code = render.run(args)
    out, err = capsys.readouterr()
    return code, out, err


def documents(text: str) -> list[dict[str, Any]]:
    return list(YAML(typ="safe", pure=True).load_all(io.StringIO(text)))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """sample-repo/ as a Git work tree with an `origin`, as users have it."""
    root = tmp_path_factory.mktemp("sample") / "repo"
    shutil.copytree(SAMPLE, root)
    git("init", "--quiet", "--initial-branch=main", root)
    git("add", "--all", cwd=root)
    git("commit", "--quiet", "-m", "Sample", cwd=root)
    git("remote", "add", "origin", "https://git.example.com/org/declarations.git", cwd=root)
    return root, git("rev-parse", "HEAD", cwd=root).strip()


def test_every_sample_entry_renders_to_valid_objects(
        sample: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, head = sample
    entries = DeclarationLoader().load(DirectorySource(root)).entries
    for entry in entries.values():
        code, out, err = rendered(capsys, "--repo", str(root), entry.id)
        assert code == 0, err
        docs = documents(out)
        assert [d["kind"] for d in docs][-1] == "Job"
        assert out.count("\n---\n") == len(docs) - 1
        assert "&id" not in out  # no YAML anchors: plain objects
        for doc in docs:
            kubernetes_validate.validate(doc, "1.33", strict=True)
        job = docs[-1]
        operation = Operation.RUN if entry.id.startswith("task/") else Operation.APPLY
        assert job["metadata"]["name"] == run_id_for(entry, operation, 1)
        assert job["metadata"]["namespace"] == "reconciler-demo"
        assert job["metadata"]["annotations"]["reconciler.io/revision"] == head


def test_stacks_clone_the_origin_at_head(
        sample: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, head = sample
    code, out, _ = rendered(capsys, "--repo", str(root), "stack/network")
    assert code == 0
    clone = documents(out)[-1]["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e.get("value") for e in clone["env"]}
    assert env["GIT_URL"] == "https://git.example.com/org/declarations.git"
    assert env["GIT_REF"] == head


def test_a_stack_shows_the_access_it_is_given(
        sample: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    """What a reviewer sees of a stack's pod: its own account, bound to a Role that reaches its
    own state Secret and lock Lease by name, and no other token."""
    root, _ = sample
    code, out, _ = rendered(capsys, "--repo", str(root), "stack/network")
    assert code == 0
    docs = {d["kind"]: d for d in documents(out)}
    assert list(docs) == ["ServiceAccount", "Secret", "Lease", "Role", "RoleBinding", "Job"]
    pod = docs["Job"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"] == (
        "reconciler-stack-network")
    assert docs["RoleBinding"]["subjects"][0]["name"] == pod["serviceAccountName"]
    assert [(r["resources"], r["resourceNames"], r["verbs"]) for r in docs["Role"]["rules"]] == [
        (["secrets"], ["tfstate-default-reconciler-network"], ["get", "update"]),
        (["leases"], ["lock-tfstate-default-reconciler-network"], ["get", "update"])]


def test_task_files_come_first_as_a_config_map(
        sample: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = sample
    code, out, _ = rendered(capsys, "--repo", str(root), "--namespace", "review",
                            "task/build-report")
    assert code == 0
    config_map, job = documents(out)
    assert config_map["kind"] == "ConfigMap"
    assert config_map["data"]["report.py"] == (SAMPLE / "scripts/report.py").read_text()
    assert "report.py: |" in out  # multi-line files read as text, not as escaped strings
    assert config_map["metadata"]["namespace"] == job["metadata"]["namespace"] == "review"


def test_a_missing_entry_names_what_there_is(
        sample: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = sample
    code, out, err = rendered(capsys, "--repo", str(root), "task/nope")
    assert (code, out) == (1, "")
    assert "task/nope: no such entry; entries: stack/feature-flags" in err


def test_an_invalid_entry_shows_where_it_is_wrong(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "task.yaml").write_text(
        "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata:\n  name: broken\n"
        "spec:\n  command: [run]\n  timeout: soon\n")
    code, out, err = rendered(capsys, "--repo", str(tmp_path), "task/broken")
    assert (code, out) == (1, "")
    assert "task/broken is invalid" in err
    assert "task.yaml:7:" in err


def test_an_entry_that_cannot_run_on_kubernetes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "task.yaml").write_text(
        "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata:\n  name: imageless\n"
        "spec:\n  command: [run]\n")
    code, _, err = rendered(capsys, "--repo", str(tmp_path), "task/imageless")
    assert code == 1
    assert "task/imageless: no image" in err
    assert "has no commit: the revision is shown as 0000000000" in err


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rendered(capsys, "--repo", str(tmp_path), "job/x")[0] == 2
    assert rendered(capsys, "--repo", str(tmp_path / "missing"), "task/x")[0] == 2
