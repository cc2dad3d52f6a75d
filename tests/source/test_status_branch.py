"""What the source tells the daemon about its status branch: unchanged (at no cost beyond the
poll), moved on by someone else's commit, or rewritten so that the daemon's last status commit
is gone (a force-push, a reset, a deletion). A push that races a rewrite is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.source.errors import HistoryRewrittenError
from reconciler.source.gitsource import GitSource
from tests.support.gitservers import GitDaemon, GitUser, branch_head, push_once_before_the_next

STATUS = "reconciler-status"
FIRST = {"status/README.md": b"# one\n", "status/tasks/a.yaml": b"a: 1\n"}


class FetchCounter:
    """Counts the fetches the source makes, and lets each one through to the real remote."""

    def __init__(self, source: GitSource) -> None:
        self.calls = 0
        real = source.remote.fetch

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        source.remote.fetch = counted  # type: ignore[method-assign]


@pytest.fixture
def source(git_daemon: GitDaemon, bare_remote: Path, tmp_path: Path) -> GitSource:
    """A source that has read the status branch and pushed two status commits to it."""
    made = GitSource(git_daemon.url("repo.git"), tmp_path / "state", status_branch=STATUS)
    assert made.read_status() == {}
    made.write_status(FIRST, "status 1")
    made.write_status({"status/tasks/a.yaml": b"a: 2\n"}, "status 2")
    return made


@pytest.fixture
def user(git_daemon: GitDaemon, git_user: Callable[..., GitUser], source: GitSource) -> GitUser:
    return git_user(git_daemon.url("repo.git"), branch=STATUS)


def test_an_untouched_branch_costs_nothing_beyond_the_poll(source: GitSource) -> None:
    fetches = FetchCounter(source)
    for _ in range(3):
        assert source.head() is not None
        assert source.status_changed() is None
    assert fetches.calls == 0


def test_nothing_is_known_without_a_poll(source: GitSource, user: GitUser) -> None:
    user.git("push", "--quiet", "origin", f":refs/heads/{STATUS}")
    assert source.status_changed() is None  # no poll since the last push: nothing seen
    source.head()
    change = source.status_changed()
    assert change is not None
    assert change.rewritten
    assert source.status_changed() is None  # reported once


def test_a_force_push_to_an_older_commit_is_a_rewrite(
    source: GitSource, user: GitUser
) -> None:
    user.git("reset", "--quiet", "--hard", "HEAD^")
    user.push(STATUS, force=True)
    source.head()

    change = source.status_changed()

    assert change is not None
    assert change.rewritten
    assert "force-pushed or reset" in change.reason
    assert change.files == FIRST  # what is there now, for the daemon to diff against


def test_a_deleted_branch_is_a_rewrite_with_no_files(source: GitSource, user: GitUser) -> None:
    user.git("push", "--quiet", "origin", f":refs/heads/{STATUS}")
    source.head()

    change = source.status_changed()

    assert change is not None
    assert (change.rewritten, change.files) == (True, {})
    assert "deleted" in change.reason
    # The next status commit starts the branch afresh instead of reviving the old history.
    commit = source.write_status(FIRST, "status again")
    assert commit is not None
    assert source.remote.repository[commit].parent_ids == []


def test_a_commit_on_top_that_edits_status_files_is_a_change_not_a_rewrite(
    source: GitSource, user: GitUser
) -> None:
    user.commit({"status/tasks/a.yaml": None, "status/NOTE.md": "by hand\n"}, "Edit status")
    user.push(STATUS)
    source.head()

    change = source.status_changed()

    assert change is not None
    assert not change.rewritten
    assert change.files == {"status/README.md": b"# one\n", "status/NOTE.md": b"by hand\n"}


def test_a_commit_on_top_outside_the_status_folder_is_no_change(
    source: GitSource, user: GitUser
) -> None:
    user.commit({"NOTES.md": "elsewhere\n"}, "A note")
    user.push(STATUS)
    source.head()
    assert source.status_changed() is None
    ours = source.write_status({"status/tasks/a.yaml": b"a: 3\n"}, "status 3")
    assert ours is not None
    assert source.remote.repository[ours].parents[0].message == "A note\n"


def test_a_push_racing_a_rewrite_is_refused_not_rebuilt_on_it(
    source: GitSource, user: GitUser, bare_remote: Path, tmp_path: Path
) -> None:
    """Someone force-pushes the branch back while our push is in flight: rebuilding only our
    change on their head would leave the other status files lost, so the push fails."""
    older = user.git("rev-parse", "HEAD^")
    marker = tmp_path / "raced"
    push_once_before_the_next(bare_remote, user, marker, "--force", f"{older}:refs/heads/{STATUS}")

    with pytest.raises(HistoryRewrittenError, match="no longer contains"):
        source.write_status({"status/tasks/a.yaml": b"a: 3\n"}, "status 3")

    assert marker.exists()
    assert branch_head(bare_remote, STATUS) == older
    source.head()
    change = source.status_changed()
    assert change is not None
    assert change.rewritten
