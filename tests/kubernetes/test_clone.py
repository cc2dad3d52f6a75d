"""The clone container's script, run for real with `sh` and `git` against real Git servers:
a branch, a tag or an exact commit; HTTPS credentials through the helper (never on disk, never
printed); SSH with a key and strictly checked host keys."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from reconciler.executors.kubernetes.clone import CLONE_SCRIPT
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.githttp import GitHTTPServer
from tests.support.gitservers import GitDaemon, GitUser
from tests.support.gitssh import SSHServer

Clone = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def clone(tmp_path: Path) -> Clone:
    """Run the script as the container would: its env, a fresh /workspace and HOME."""
    count = 0

    def run(url: str, ref: str, **env: str) -> subprocess.CompletedProcess[str]:
        nonlocal count
        count += 1
        workspace = tmp_path / f"workspace-{count}"
        home = tmp_path / f"home-{count}"
        workspace.mkdir()
        home.mkdir()
        environment: Mapping[str, str] = {
            "PATH": os.environ["PATH"], "HOME": str(home), "WORKSPACE": str(workspace),
            "GIT_URL": url, "GIT_REF": ref, "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1", **env,
        }
        result = subprocess.run(["/bin/sh", "-c", CLONE_SCRIPT], env=environment,
                                capture_output=True, text=True, timeout=60, check=False)
        result.workspace = workspace  # type: ignore[attr-defined]
        return result

    return run


def head(result: subprocess.CompletedProcess[str]) -> str:
    workspace: Path = result.workspace  # type: ignore[attr-defined]
    return subprocess.run(["git", "-C", str(workspace), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull,
                               "GIT_CONFIG_SYSTEM": os.devnull,
                               "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory",
                               "GIT_CONFIG_VALUE_0": "*"}).stdout.strip()


def test_a_branch_a_tag_and_an_exact_commit(
        bare_remote: Path, git_daemon: GitDaemon, git_user: Callable[..., GitUser],
        clone: Clone) -> None:
    url = git_daemon.url("repo.git")
    user = git_user(url)
    first = user.commit({"app.py": "v1\n"}, "First")
    user.git("tag", "v1")
    user.git("push", "--quiet", "origin", "v1")
    second = user.commit({"app.py": "v2\n"}, "Second")
    user.push()

    branch = clone(url, "main")
    assert branch.returncode == 0, branch.stderr
    assert head(branch) == second
    assert f"checked out {second} (main)" in branch.stdout
    workspace: Path = branch.workspace  # type: ignore[attr-defined]
    assert (workspace / "app.py").read_text() == "v2\n"
    assert (workspace / "app.py").stat().st_mode & 0o020  # group-writable for the run

    assert head(clone(url, "v1")) == first
    exact = clone(url, first)
    assert exact.returncode == 0, exact.stderr
    assert head(exact) == first


def test_https_credentials_come_from_the_secret_and_stay_secret(
        bare_remote: Path, git_http: GitHTTPServer, clone: Clone) -> None:
    url = git_http.url("repo.git")

    good = clone(url, "main", GIT_USERNAME=HTTP_USER, GIT_PASSWORD=HTTP_PASSWORD)
    assert good.returncode == 0, good.stderr
    workspace: Path = good.workspace  # type: ignore[attr-defined]
    assert (workspace / "README.md").exists()
    for path in workspace.rglob("*"):
        if path.is_file():
            assert HTTP_PASSWORD.encode() not in path.read_bytes(), path

    bad = clone(url, "main", GIT_USERNAME=HTTP_USER, GIT_PASSWORD="wrong-password-123")
    assert bad.returncode != 0
    assert "wrong-password-123" not in bad.stdout + bad.stderr
    assert clone(url, "main").returncode != 0  # no credentials, no prompt: a clear failure


def test_ssh_with_a_key_and_known_hosts(
        bare_remote: Path, ssh_server: SSHServer, clone: Clone) -> None:
    url = ssh_server.url(bare_remote)
    key = ssh_server.client_key.read_text()

    good = clone(url, "main", GIT_SSH_KEY=key, GIT_KNOWN_HOSTS=ssh_server.known_hosts())
    assert good.returncode == 0, good.stderr
    workspace: Path = good.workspace  # type: ignore[attr-defined]
    assert (workspace / "README.md").exists()

    unknown = clone(url, "main", GIT_SSH_KEY=key, GIT_KNOWN_HOSTS="")
    assert unknown.returncode != 0
    assert "Host key verification failed" in unknown.stderr
