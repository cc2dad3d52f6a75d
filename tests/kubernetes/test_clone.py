"""The clone container's script, run for real with `sh` and `git` against real Git servers:
a branch, a tag or an exact commit; HTTPS credentials through the helper (never on disk, never
printed, never to another host, never over plain http); SSH with a key and strictly checked
host keys."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from reconciler.executors.kubernetes.clone import CLONE_SCRIPT
from tests.kubernetes.tlsgit import TLSGitServer
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


@pytest.fixture
def git_https(git_root: Path, tmp_path: Path) -> Iterator[TLSGitServer]:
    """Smart HTTP over TLS with basic auth; `localhost` is redirected to `127.0.0.1`."""
    with TLSGitServer(git_root, tmp_path / "tls", username=HTTP_USER, password=HTTP_PASSWORD,
                      redirect=("localhost", "127.0.0.1")) as server:
        yield server


def test_https_credentials_come_from_the_secret_and_stay_secret(
        bare_remote: Path, git_https: TLSGitServer, clone: Clone) -> None:
    url = git_https.url("repo.git")
    trust = {"GIT_SSL_CAINFO": str(git_https.cert)}

    good = clone(url, "main", GIT_USERNAME=HTTP_USER, GIT_PASSWORD=HTTP_PASSWORD, **trust)
    assert good.returncode == 0, good.stderr
    workspace: Path = good.workspace  # type: ignore[attr-defined]
    assert (workspace / "README.md").exists()
    for path in workspace.rglob("*"):
        if path.is_file():
            assert HTTP_PASSWORD.encode() not in path.read_bytes(), path

    bad = clone(url, "main", GIT_USERNAME=HTTP_USER, GIT_PASSWORD="wrong-password-123", **trust)
    assert bad.returncode != 0
    assert "wrong-password-123" not in bad.stdout + bad.stderr
    assert clone(url, "main", **trust).returncode != 0  # no credentials, no prompt: a failure


def test_a_redirect_to_another_host_gets_no_password(
        bare_remote: Path, git_https: TLSGitServer, clone: Clone) -> None:
    """The declared host sends git on to another one, which asks for credentials: the helper
    answers only for the declared scheme, host and port, so nothing is sent."""
    declared = git_https.url("repo.git", host="localhost")
    before = len(git_https.requests)

    result = clone(declared, "main", GIT_USERNAME=HTTP_USER, GIT_PASSWORD=HTTP_PASSWORD,
                   GIT_SSL_CAINFO=str(git_https.cert))

    assert result.returncode != 0
    assert HTTP_PASSWORD not in result.stdout + result.stderr
    seen = git_https.requests[before:]
    assert seen, "the redirected request did reach the other host"
    assert not any(r.authenticated for r in seen)
    assert {r.status for r in seen} == {401}


def test_the_helper_answers_for_the_declared_host_only(
        bare_remote: Path, git_https: TLSGitServer, clone: Clone, tmp_path: Path) -> None:
    """What git itself asks the configured helper, for the declared host and for others."""
    url = git_https.url("repo.git")
    done = clone(url, "main", GIT_USERNAME=HTTP_USER, GIT_PASSWORD=HTTP_PASSWORD,
                 GIT_SSL_CAINFO=str(git_https.cert))
    assert done.returncode == 0, done.stderr
    home = next(tmp_path.glob("home-*"))
    port = git_https.port

    def fill(protocol: str, host: str) -> str:
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_TERMINAL_PROMPT": "0", "GIT_PASSWORD": HTTP_PASSWORD,
               "GIT_USERNAME": HTTP_USER, "GIT_CREDENTIAL_HOST": f"127.0.0.1:{port}"}
        result = subprocess.run(["git", "credential", "fill"], env=env, capture_output=True,
                                text=True, timeout=30, check=False,
                                input=f"protocol={protocol}\nhost={host}\n\n")
        return result.stdout

    assert f"password={HTTP_PASSWORD}" in fill("https", f"127.0.0.1:{port}")
    for protocol, host in (("https", "127.0.0.1"), ("https", f"127.0.0.1:{port + 1}"),
                           ("https", f"evil.example:{port}"), ("http", f"127.0.0.1:{port}")):
        assert HTTP_PASSWORD not in fill(protocol, host), (protocol, host)


def test_credentials_never_go_over_plain_http(
        bare_remote: Path, git_http: GitHTTPServer, clone: Clone) -> None:
    result = clone(git_http.url("repo.git"), "main", GIT_USERNAME=HTTP_USER,
                   GIT_PASSWORD=HTTP_PASSWORD)
    assert result.returncode != 0
    assert "passwords go over https only" in result.stderr
    assert git_http.requests == []  # not even asked


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
