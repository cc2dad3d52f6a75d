"""With the local executor runs are processes of the daemon's machine: no namespaces, no
enforced resources. What the policy still bounds there, and what it cannot mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.support import defaults, policy, task, write_repo
from tests.support.commands import cli


def test_namespaces_and_required_limits_do_not_apply_locally(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo", {
        "reconciler.yaml": defaults("namespace: anywhere"),
        "t.yaml": task("t", "resources: {limits: {memory: 1Gi}}"),
    })
    (tmp_path / "policy.yaml").write_text(policy("namespaces: [runs]", 'limits: {cpu: "2"}'))
    args = ("validate", str(repo), "--policy", str(tmp_path / "policy.yaml"))
    assert cli(capsys, *args)[0] == 0
    code, out, _ = cli(capsys, *args, "--executor", "kubernetes")
    assert code == 1
    assert [line.split(": ")[1] for line in out.splitlines()] == [
        "spec.namespace", "spec.resources.limits.cpu"]


def test_what_is_declared_is_still_bounded_locally(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo", {
        "t.yaml": task("t", "resources: {limits: {cpu: '8'}}", "secretEnv:",
                       "  K: {secret: reconciler-credentials, key: password}"),
    })
    (tmp_path / "policy.yaml").write_text(policy('limits: {cpu: "2"}'))
    code, out, _ = cli(capsys, "validate", str(repo), "--policy", str(tmp_path / "policy.yaml"))
    assert code == 1
    assert [line.split(": ")[1] for line in out.splitlines()] == [
        "spec.resources.limits.cpu", "spec.secretEnv.K.secret"]
