"""A Task's `repository`, cloned before its command by the local executor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.declarations.models import TaskSpec
from reconciler.runs import RunRequest
from reconciler.types import RunState
from tests.executors.conftest import LocalHarness, request_for, task_entry, wait_for_run
from tests.support.githttp import GitHTTPServer
from tests.support.gitservers import GitUser, make_bare_remote
from tests.support.gitssh import SSHServer, known_hosts_line, ssh_keygen

PASSWORD = "pw-Kq7-5772156649"


def with_repository(
    name: str, command: list[str], repository: dict[str, str], **options: object
) -> RunRequest:
    entry = task_entry(name, command, **options)  # type: ignore[arg-type]
    spec = TaskSpec.model_validate({
        **entry.task.model_dump(exclude_none=True), "repository": repository,
    })
    return request_for(entry.model_copy(update={"spec": spec}))


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, list[str]]:
    """A repository with two commits on main and a tag on the first; returns the commits."""
    bare = make_bare_remote(tmp_path / "git" / "app.git", {"README": "first\n"})
    user = GitUser(f"file://{bare}", tmp_path / "alice").clone()
    first = user.git("rev-parse", "HEAD")
    user.git("tag", "v1")
    second = user.commit({"README": "second\n"})
    user.push()
    user.git("push", "--quiet", "origin", "v1")
    return bare, [first, second]


@pytest.fixture
def http(tmp_path: Path, remote: tuple[Path, list[str]]) -> Iterator[GitHTTPServer]:
    with GitHTTPServer(remote[0].parent, username="robot", password=PASSWORD) as server:
        yield server


SHOW = ["sh", "-c", 'cat README; echo "at $(git rev-parse HEAD)"']


@pytest.mark.parametrize(("ref", "commit"), [("main", 1), ("v1", 0), ("first-commit", 0)])
def test_clones_branch_tag_or_commit(
    local: LocalHarness, remote: tuple[Path, list[str]], ref: str, commit: int
) -> None:
    bare, commits = remote
    ref = commits[0] if ref == "first-commit" else ref
    request = with_repository(f"clone-{commit}", SHOW, {"url": f"file://{bare}", "ref": ref})
    executor = local.make()
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.SUCCEEDED, executor.logs(request.run_id)
    assert f"at {commits[commit]}" in report.log_tail.splitlines()


def test_task_files_sit_next_to_the_workspace(
    local: LocalHarness, remote: tuple[Path, list[str]]
) -> None:
    bare, _ = remote
    request = with_repository(
        "files-and-repo", ["sh", "show.sh"], {"url": f"file://{bare}"},
        files={"show.sh": "cat ../workspace/README\n"},
    )
    executor = local.make()
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.SUCCEEDED
    assert "second" in report.log_tail.splitlines()


def test_https_credentials_reach_git_and_not_the_command(
    local: LocalHarness, http: GitHTTPServer
) -> None:
    local.add_secret("git-creds", "username", "robot\n")
    local.add_secret("git-creds", "password", PASSWORD)
    request = with_repository(
        "private", ["sh", "-c", "cat README; env"],
        {"url": http.url("app.git"), "credentialsSecret": "git-creds"},
    )
    executor = local.make()
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)
    log = executor.logs(request.run_id)

    assert report.state is RunState.SUCCEEDED, log
    assert "second" in log.splitlines()
    assert "RECONCILER_GIT" not in log
    assert PASSWORD not in log
    assert any(r.authenticated for r in http.requests)


def test_wrong_password_fails_the_run_clearly(local: LocalHarness, http: GitHTTPServer) -> None:
    local.add_secret("git-creds", "password", "not-the-password")
    request = with_repository(
        "denied", ["sh", "-c", "echo should-not-run"],
        {"url": http.url("app.git"), "credentialsSecret": "git-creds"},
    )
    executor = local.make()
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert report.message.startswith(f"could not check out {http.url('app.git')} at 'main'")
    assert "should-not-run" not in executor.logs(request.run_id)
    assert "not-the-password" not in executor.logs(request.run_id)


def test_missing_credentials_fail_before_anything_runs(
    local: LocalHarness, remote: tuple[Path, list[str]]
) -> None:
    local.add_secret("ssh-creds", "ssh-privatekey", "-----BEGIN OPENSSH PRIVATE KEY-----\n")
    request = with_repository(
        "no-hosts", ["true"],
        {"url": "git@git.example.com:org/app.git", "credentialsSecret": "ssh-creds"},
    )
    executor = local.make()
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert "'ssh-creds' has no key 'known_hosts'" in report.message
    assert report.started_at is not None
    assert report.exit_code is None


def test_ssh_checkout_with_a_key_and_strict_host_keys(
    local: LocalHarness, remote: tuple[Path, list[str]], ssh_server: SSHServer
) -> None:
    bare, commits = remote
    key = ssh_server.client_key.read_text()
    local.add_secret("deploy-key", "ssh-privatekey", key.rstrip("\n"))
    local.add_secret("deploy-key", "known_hosts", ssh_server.known_hosts())
    request = with_repository(
        "over-ssh", [*SHOW[:2], SHOW[2] + "; env"],
        {"url": ssh_server.url(bare), "credentialsSecret": "deploy-key"},
    )
    executor = local.make()
    executor.submit(request)

    report = wait_for_run(executor, request.run_id, timeout=30)
    log = executor.logs(request.run_id)

    assert report.state is RunState.SUCCEEDED, log
    assert f"at {commits[1]}" in log.splitlines()
    assert "SSH_AUTH_SOCK" not in log
    assert "PRIVATE KEY" not in log


def test_ssh_checkout_refuses_an_unknown_host(
    local: LocalHarness, remote: tuple[Path, list[str]], ssh_server: SSHServer, tmp_path: Path
) -> None:
    bare, _ = remote
    other = ssh_keygen(tmp_path / "other_host_key")
    local.add_secret("deploy-key", "ssh-privatekey", ssh_server.client_key.read_text())
    impostor = known_hosts_line("127.0.0.1", ssh_server.port, other.with_suffix(".pub"))
    local.add_secret("deploy-key", "known_hosts", impostor)
    request = with_repository(
        "spoofed", ["true"], {"url": ssh_server.url(bare), "credentialsSecret": "deploy-key"},
    )
    executor = local.make()
    executor.submit(request)

    report = wait_for_run(executor, request.run_id, timeout=30)

    assert report.state is RunState.FAILED
    assert report.message.startswith("could not check out ssh://")
    assert "Host key verification failed" in executor.logs(request.run_id)
