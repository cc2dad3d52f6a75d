"""`--policy` on `validate` and `render` as a pull request check or an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import status_file, task_yaml
from tests.policy.support import defaults, policy, task, write_repo
from tests.support.commands import cli
from tests.support.gitservers import make_bare_remote


def _validate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return subprocess.run([sys.executable, "-m", "reconciler", "validate", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**clean, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repo(tmp_path / "repo", {
        "reconciler.yaml": defaults("namespace: runs"),
        "ok.yaml": task("ok"),
        "steal.yaml": task("steal", "secretEnv:",
                           "  T: {secret: reconciler-credentials, key: password}"),
    })


def test_validate_policy_from_the_environment_as_the_daemon_reads_it(
    repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "policy.yaml").write_text(policy())
    env = {"RECONCILER_POLICY": str(tmp_path / "policy.yaml"),
           "RECONCILER_EXECUTOR": "kubernetes", "RECONCILER_NAMESPACE": "runs"}
    done = _validate(str(repo), env=env)
    assert done.returncode == 1, done.stderr
    assert done.stdout == (f"{repo}/steal.yaml:9:17: spec.secretEnv.T.secret: denied by policy: "
                           "secret reconciler-credentials holds the daemon's own credentials "
                           "or state\n")
    assert done.stderr == "1 problem (1 entry invalid); valid: 1 task and 0 stacks in 3 files\n"
    # Without a namespace list, runs may go only to the daemon's own namespace.
    other = _validate(str(repo), "--namespace", "elsewhere", env=env)
    assert other.stdout.startswith(
        f"{repo}/reconciler.yaml:6:14: spec.namespace: denied by policy: namespace runs is not "
        "allowed (allowed: elsewhere)\n")
    assert other.returncode == 1


def test_validate_json_lists_denied_entries_as_invalid(
    repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "policy.yaml").write_text(policy())
    done = _validate(str(repo), "--policy", str(tmp_path / "policy.yaml"), "--format", "json")
    report = json.loads(done.stdout)
    assert [e["id"] for e in report["entries"]] == ["task/ok"]
    [invalid] = report["invalid"]
    assert invalid["id"] == "task/steal"
    assert invalid["errors"][0]["field"] == "spec.secretEnv.T.secret"
    assert invalid["errors"][0]["message"].startswith("denied by policy: ")


def test_render_refuses_a_denied_entry(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "policy.yaml").write_text(policy("namespaces: [runs]"))
    code, out, err = cli(capsys, "render", "task/steal", "--repo", str(repo),
                         "--policy", str(tmp_path / "policy.yaml"))
    assert (code, out) == (1, "")
    assert "task/steal is invalid" in err
    assert ("steal.yaml:9:17: spec.secretEnv.T.secret: denied by policy: secret "
            "reconciler-credentials") in err
    code, out, _ = cli(capsys, "render", "task/ok", "--repo", str(repo),
                       "--policy", str(tmp_path / "policy.yaml"))
    assert code == 0
    assert "kind: Job" in out
    # Rendering into a namespace the policy does not list is refused too.
    code, out, err = cli(capsys, "render", "task/ok", "--repo", str(repo), "--namespace",
                         "other", "--policy", str(tmp_path / "policy.yaml"))
    assert (code, out) == (1, "")
    assert "--namespace other: denied by policy: namespace other is not allowed" in err


def test_run_once_leaves_a_denied_task_invalid_and_runs_the_others(tmp_path: Path) -> None:
    remote = make_bare_remote(tmp_path / "cli.git", {
        "ok.yaml": task_yaml("ok", [sys.executable, "-c", "print('fine')"]),
        "steal.yaml": task_yaml("steal", [sys.executable, "-c", "print('stolen')"],
                                serviceAccountName="reconciler-runner"),
    })
    (tmp_path / "policy.yaml").write_text(policy('serviceAccounts: ["*"]'))
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "run", "--once", "--repo", f"file://{remote}",
         "--state-dir", str(tmp_path / "state"), "--listen", "",
         "--policy", str(tmp_path / "policy.yaml")],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr  # a declaration failed to load
    assert "spec.serviceAccountName: denied by policy: service account reconciler-runner " \
           "is reserved for the daemon" in done.stderr
    ok = status_file(remote, "status/tasks/ok.yaml")
    steal = status_file(remote, "status/tasks/steal.yaml")
    assert ok is not None
    assert ok["phase"] == "Succeeded"
    assert steal is not None
    assert steal["phase"] == "Invalid"
    assert "denied by policy" in steal["message"]
