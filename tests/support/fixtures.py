"""Pytest fixtures around the real Git servers of `tests.support.gitservers`.

The root `tests/conftest.py` declares this module as a plugin, so every test takes these
fixtures by name as parameters; nothing imports them.

Servers are started per test on a free port of
127.0.0.1 and stopped (processes reaped) when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.declarations.repo import Repo, sample_history
from tests.support.githttp import GitHTTPServer
from tests.support.gitservers import GitDaemon, GitUser, make_bare_remote
from tests.support.gitssh import SSHServer, sshd_missing_reason

HTTP_USER = "alice"
HTTP_PASSWORD = "correct-horse-battery-staple"

SAMPLE_FILES: dict[str, str | bytes] = {
    "README.md": "# declarations\n",
    "tasks/hello.yaml": (
        "apiVersion: reconciler.io/v1alpha1\n"
        "kind: Task\n"
        "metadata:\n  name: hello\n"
        "spec:\n  command: [echo, hello]\n"
    ),
}


@pytest.fixture
def git_root(tmp_path: Path) -> Path:
    """The folder every server of a test serves repositories from."""
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def bare_remote(git_root: Path) -> Path:
    """`<git_root>/repo.git`, seeded with SAMPLE_FILES on `main`."""
    return make_bare_remote(git_root / "repo.git", SAMPLE_FILES)


@pytest.fixture
def git_daemon(git_root: Path) -> Iterator[GitDaemon]:
    """`git daemon` over git_root; `git_daemon.url("repo.git")`."""
    with GitDaemon(git_root) as daemon:
        yield daemon


@pytest.fixture
def git_http(git_root: Path) -> Iterator[GitHTTPServer]:
    """Smart HTTP over git_root with basic auth (HTTP_USER / HTTP_PASSWORD)."""
    with GitHTTPServer(git_root, username=HTTP_USER, password=HTTP_PASSWORD) as server:
        yield server


@pytest.fixture
def ssh_server(tmp_path: Path) -> Iterator[SSHServer]:
    """A real sshd on 127.0.0.1 restricted to git-shell; skipped when sshd is missing."""
    reason = sshd_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with SSHServer(tmp_path / "sshd") as server:
        yield server


@pytest.fixture
def git_user(tmp_path: Path) -> Callable[..., GitUser]:
    """`git_user(url, name="Bob")` → a GitUser with a fresh clone of `url`."""
    count = 0

    def make(url: str | Path, name: str = "Alice Example", branch: str | None = None) -> GitUser:
        nonlocal count
        count += 1
        email = f"{name.split(maxsplit=1)[0].lower()}@example.com"
        user = GitUser(str(url), tmp_path / f"user-{count}", name=name, email=email)
        return user.clone(branch)

    return make


@pytest.fixture
def history(tmp_path: Path) -> Repo:
    """sample-repo/ committed once, for `diff` to compare a change against."""
    return sample_history(tmp_path / "decl")
