"""Status commits: no work tree, nothing committed when nothing changed, and no update lost
when someone else pushes to the status branch at the same time."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pygit2
import pytest
from pydantic import SecretStr

from reconciler.settings import GitCredentials
from reconciler.source.errors import PushConflictError, PushRejectedError
from reconciler.source.remote import GitRemote
from reconciler.source.writer import PACKED, Author, commit_files
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER
from tests.support.githttp import GitHTTPServer
from tests.support.gitservers import (
    GitDaemon,
    GitUser,
    branch_head,
    git,
    install_hook,
    push_once_before_the_next,
    refuse_pushes_to,
)

STATUS = "reconciler-status"


def no_sleep(_: float) -> None:
    pass


@pytest.fixture
def remote(git_daemon: GitDaemon, bare_remote: Path, tmp_path: Path) -> GitRemote:
    """Our side, over git://, synced the way the daemon does at start."""
    remote = GitRemote(git_daemon.url("repo.git"), tmp_path / "state")
    remote.fetch(["main"], optional=[STATUS])
    return remote


def test_first_status_commit_creates_the_branch_with_just_those_files(
    remote: GitRemote, bare_remote: Path, git_user: Callable[..., GitUser]
) -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    commit = commit_files(
        remote,
        STATUS,
        {"status/README.md": b"# Status\n", "status/tasks/hello.yaml": b"phase: Succeeded\n"},
        "Status of main@abc",
        Author(name="Reconciler Bot", email="bot@example.com"),
        clock=lambda: when,
    )

    assert commit is not None
    assert branch_head(bare_remote, STATUS) == commit
    assert remote.local_head(STATUS) == commit
    user = git_user(bare_remote, branch=STATUS)
    assert sorted(user.git("ls-files").splitlines()) == [
        "status/README.md",
        "status/tasks/hello.yaml",
    ]
    assert user.git("log", "--format=%P|%an <%ae>|%cn|%aI|%B", STATUS).strip() == (
        "|Reconciler Bot <bot@example.com>|Reconciler Bot|2024-05-01T12:30:00+02:00|"
        "Status of main@abc"
    )
    assert not (remote.path / "status").exists()  # written straight into the object database
    assert remote.read_tree_files(STATUS, "status/tasks") == {
        "status/tasks/hello.yaml": b"phase: Succeeded\n"
    }


def test_unchanged_content_commits_nothing(remote: GitRemote, bare_remote: Path) -> None:
    files = {"status/tasks/a.yaml": b"a\n", "status/tasks/b.yaml": b"b\n"}
    first = commit_files(remote, STATUS, files, "Status")
    assert first is not None

    assert commit_files(remote, STATUS, files, "Status again") is None
    assert commit_files(remote, STATUS, {"status/tasks/a.yaml": b"a\n"}, "Again") is None
    assert commit_files(remote, STATUS, {"status/gone.yaml": None}, "Delete absent") is None
    assert commit_files(remote, STATUS, {}, "Empty") is None
    assert branch_head(bare_remote, STATUS) == first


def test_changes_touch_only_the_named_files(
    remote: GitRemote, bare_remote: Path, git_user: Callable[..., GitUser]
) -> None:
    commit_files(
        remote,
        STATUS,
        {
            "status/README.md": b"table\n",
            "status/tasks/a.yaml": b"a\n",
            "status/tasks/b.yaml": b"b\n",
            "status/stacks/net.yaml": b"net\n",
        },
        "Status 1",
    )
    stacks_tree = remote.repository.revparse_single(f"{STATUS}:status/stacks").id

    second = commit_files(
        remote, STATUS, {"status/tasks/a.yaml": b"a2\n", "status/tasks/b.yaml": None}, "Status 2"
    )

    assert second is not None
    assert remote.repository.revparse_single(f"{STATUS}:status/stacks").id == stacks_tree
    assert remote.read_tree_files(STATUS, "status") == {
        "status/README.md": b"table\n",
        "status/tasks/a.yaml": b"a2\n",
        "status/stacks/net.yaml": b"net\n",
    }
    # Deleting the last file of a folder removes the folder.
    commit_files(remote, STATUS, {"status/stacks/net.yaml": None}, "Status 3")
    user = git_user(bare_remote, branch=STATUS)
    assert user.git("ls-tree", "--name-only", "HEAD", "status/").splitlines() == [
        "status/README.md",
        "status/tasks",
    ]
    assert user.log() == ["Status 3", "Status 2", "Status 1"]


@pytest.mark.parametrize(
    "path", ["/abs.yaml", "../up.yaml", "a//b.yaml", "a/./b.yaml", ".git/config", "a/"]
)
def test_paths_that_could_escape_are_refused(remote: GitRemote, path: str) -> None:
    with pytest.raises(ValueError, match="invalid path"):
        commit_files(remote, STATUS, {path: b"x"}, "Bad")


def test_a_path_cannot_be_both_file_and_folder(remote: GitRemote) -> None:
    with pytest.raises(ValueError, match="is a file"):
        commit_files(remote, STATUS, {"status/a": b"x", "status/a/b": b"y"}, "Bad")


def test_a_user_push_after_our_last_fetch_is_kept(
    remote: GitRemote, bare_remote: Path, git_user: Callable[..., GitUser]
) -> None:
    commit_files(remote, STATUS, {"status/tasks/a.yaml": b"a1\n"}, "Ours 1")
    user = git_user(bare_remote, branch=STATUS)
    theirs = user.commit({"status/NOTE.md": "hand-written note\n"}, "Theirs")
    user.push(STATUS)
    conflicts: list[None] = []

    ours = commit_files(
        remote, STATUS, {"status/tasks/a.yaml": b"a2\n"}, "Ours 2",
        sleep=no_sleep, on_conflict=lambda: conflicts.append(None),
    )

    assert ours is not None
    assert len(conflicts) == 1
    user.pull(STATUS)
    assert user.log() == ["Ours 2", "Theirs", "Ours 1"]
    assert user.git("rev-parse", "HEAD^") == theirs
    assert (user.workdir / "status/NOTE.md").read_text() == "hand-written note\n"
    assert (user.workdir / "status/tasks/a.yaml").read_text() == "a2\n"


def test_a_push_racing_ours_on_the_server_is_kept_and_ours_retried(
    remote: GitRemote, bare_remote: Path, git_user: Callable[..., GitUser], tmp_path: Path
) -> None:
    """A person's push lands while ours is in flight (between the server's ref advertisement
    and its ref update): the server refuses our update, we rebuild on theirs and push again."""
    commit_files(remote, STATUS, {"status/tasks/a.yaml": b"a1\n"}, "Ours 1")
    user = git_user(bare_remote, branch=STATUS)
    user.commit({"status/NOTE.md": "racing note\n"}, "Theirs")
    marker = tmp_path / "raced"
    push_once_before_the_next(bare_remote, user, marker, f"HEAD:refs/heads/{STATUS}")

    ours = commit_files(remote, STATUS, {"status/tasks/a.yaml": b"a2\n"}, "Ours 2",
                        sleep=no_sleep)

    assert marker.exists()
    assert ours is not None
    assert branch_head(bare_remote, STATUS) == ours
    user.pull(STATUS)
    assert user.log() == ["Ours 2", "Theirs", "Ours 1"]
    assert (user.workdir / "status/NOTE.md").read_text() == "racing note\n"


def test_a_branch_that_keeps_moving_gives_up_after_the_attempts(
    remote: GitRemote, bare_remote: Path, git_user: Callable[..., GitUser]
) -> None:
    commit_files(remote, STATUS, {"status/a.yaml": b"1\n"}, "Ours 1")
    user = git_user(bare_remote, branch=STATUS)
    clean_env = " ".join(f"{k}={shlex.quote(v)}" for k, v in user.env.items())
    # Every push of ours is beaten by a new commit of theirs.
    install_hook(
        bare_remote,
        "pre-receive",
        "#!/bin/sh\n"
        'case "$GIT_PUSH_OPTION_0" in theirs) exit 0;; esac\n'
        f"env -i {clean_env} git -C {user.workdir} commit --quiet --allow-empty -m Theirs\n"
        f"env -i {clean_env} git -C {user.workdir} -c push.gpgSign=false push --quiet "
        f"-o theirs origin HEAD:refs/heads/{STATUS}\n",
    )
    git("config", "receive.advertisePushOptions", "true", cwd=bare_remote)
    sleeps: list[float] = []

    with pytest.raises(PushConflictError, match="kept moving; gave up after 3 attempts") as caught:
        commit_files(remote, STATUS, {"status/a.yaml": b"2\n"}, "Ours 2",
                     attempts=3, backoff=0.01, sleep=sleeps.append)

    assert caught.value.retryable
    assert len(sleeps) == 2
    assert sleeps[0] < sleeps[1]  # backoff grows despite the jitter
    assert "Ours 2" not in git("log", "--format=%s", STATUS, cwd=bare_remote)


def test_a_refused_push_is_an_error_not_silence(
    remote: GitRemote, bare_remote: Path
) -> None:
    first = commit_files(remote, STATUS, {"status/a.yaml": b"1\n"}, "Ours 1")
    refuse_pushes_to(bare_remote, STATUS, reason="status branch is protected")

    with pytest.raises(PushRejectedError, match="refused the update of reconciler-status") as c:
        commit_files(remote, STATUS, {"status/a.yaml": b"2\n"}, "Ours 2", sleep=no_sleep)

    assert not c.value.retryable
    assert branch_head(bare_remote, STATUS) == first
    assert remote.local_head(STATUS) == first  # the mirror still matches the remote
    assert "\n" not in str(c.value)


def test_creating_a_refused_branch_is_an_error(remote: GitRemote, bare_remote: Path) -> None:
    refuse_pushes_to(bare_remote, STATUS)
    with pytest.raises(PushRejectedError):
        commit_files(remote, STATUS, {"status/a.yaml": b"1\n"}, "Ours", sleep=no_sleep)
    assert branch_head(bare_remote, STATUS) is None
    assert remote.local_head(STATUS) is None


def test_status_commits_over_authenticated_http(
    git_http: GitHTTPServer, bare_remote: Path, tmp_path: Path, git_user: Callable[..., GitUser]
) -> None:
    creds = GitCredentials(username=HTTP_USER, password=SecretStr(HTTP_PASSWORD))
    remote = GitRemote(git_http.url("repo.git"), tmp_path / "state", credentials=creds)
    first = commit_files(remote, STATUS, {"status/a.yaml": b"1\n"}, "Ours 1")
    user = git_user(bare_remote, branch=STATUS)
    user.commit({"status/b.yaml": "b\n"}, "Theirs")
    user.push(STATUS)

    second = commit_files(remote, STATUS, {"status/a.yaml": b"2\n"}, "Ours 2", sleep=no_sleep)

    assert first is not None
    assert second is not None
    assert branch_head(bare_remote, STATUS) == second
    assert remote.read_tree_files(STATUS) == {"status/a.yaml": b"2\n", "status/b.yaml": b"b\n"}
    assert any(r.method == "POST" and r.path.endswith("git-receive-pack")
               for r in git_http.requests)


def test_status_can_go_to_the_declarations_branch_itself(
    remote: GitRemote, bare_remote: Path
) -> None:
    main = remote.local_head("main")
    commit = commit_files(remote, "main", {"status/a.yaml": b"1\n"}, "Status on main")
    assert commit is not None
    assert remote.repository[commit].parent_ids == [main]
    assert set(remote.read_tree_files("main")) == {
        "README.md", "tasks/hello.yaml", "status/a.yaml"
    }
    assert datetime.now(UTC) - datetime.fromtimestamp(
        remote.repository[commit].commit_time, UTC
    ) < timedelta(minutes=1)


def test_a_commit_of_many_files_writes_their_blobs_as_one_pack(
    remote: GitRemote, bare_remote: Path
) -> None:
    pack_dir = remote.path / "objects" / "pack"
    packs = set(pack_dir.glob("*.pack"))
    files = {f"status/tasks/t{n:04d}.yaml": f"n: {n}\n".encode() * (n % 7 + 1)
             for n in range(PACKED + 50)}
    files["status/README.md"] = files["status/tasks/t0001.yaml"]  # the same blob twice

    commit = commit_files(remote, STATUS, files, "Status of many entries")

    assert commit is not None
    assert len(set(pack_dir.glob("*.pack")) - packs) == 1
    loose = list(remote.path.glob("objects/??/*"))
    assert len(loose) == 4  # the commit and its three trees
    git("--git-dir", remote.path, "fsck", "--full", "--strict", "--no-dangling")
    assert remote.read_tree_files(STATUS) == files
    served = git("--git-dir", bare_remote, "ls-tree", "-r", STATUS).splitlines()
    assert sorted(line.split()[2:] for line in served) == sorted(
        [str(pygit2.hash(data)), path] for path, data in files.items())
    git("--git-dir", bare_remote, "fsck", "--full", "--strict", "--no-dangling")
