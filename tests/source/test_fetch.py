"""Polling and fetching over every transport, against real servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.settings import GitCredentials
from reconciler.source.errors import BranchNotFoundError
from reconciler.source.maintenance import pack_loose
from reconciler.source.remote import GitRemote
from reconciler.source.writer import commit_files
from tests.support.fixtures import HTTP_PASSWORD, HTTP_USER, SAMPLE_FILES
from tests.support.gitservers import GitUser, branch_head, make_bare_remote

PROTOCOLS = ["path", "file", "git", "http", "ssh"]


@pytest.fixture(params=PROTOCOLS)
def served(
    request: pytest.FixtureRequest, bare_remote: Path, tmp_path: Path
) -> tuple[str, GitCredentials]:
    """(URL, credentials) of `bare_remote` over one transport."""
    protocol = request.param
    if protocol == "path":
        return str(bare_remote), GitCredentials()
    if protocol == "file":
        return f"file://{bare_remote}", GitCredentials()
    if protocol == "git":
        return request.getfixturevalue("git_daemon").url("repo.git"), GitCredentials()
    if protocol == "http":
        server = request.getfixturevalue("git_http")
        creds = GitCredentials(username=HTTP_USER, password=SecretStr(HTTP_PASSWORD))
        return server.url("repo.git"), creds
    sshd = request.getfixturevalue("ssh_server")
    creds = GitCredentials(
        ssh_key_file=sshd.client_key,
        known_hosts_file=sshd.write_known_hosts(tmp_path / "known_hosts"),
    )
    return sshd.url(bare_remote), creds


def test_fetch_mirrors_the_branch_and_its_files(
    served: tuple[str, GitCredentials], bare_remote: Path, tmp_path: Path
) -> None:
    url, creds = served
    remote = GitRemote(url, tmp_path / "state", credentials=creds)

    heads = remote.fetch(["main"])

    assert heads == {"main": branch_head(bare_remote, "main")}
    assert (tmp_path / "state" / "mirror.git" / "HEAD").is_file()
    assert remote.local_head("main") == heads["main"]
    assert remote.read_tree_files("main", "tasks") == {
        "tasks/hello.yaml": str(SAMPLE_FILES["tasks/hello.yaml"]).encode()
    }
    assert remote.resolve("main") == heads["main"]
    assert remote.resolve(heads["main"][:10]) == heads["main"]


def test_poll_sees_a_new_commit_without_downloading_it(
    served: tuple[str, GitCredentials],
    bare_remote: Path,
    tmp_path: Path,
    git_user: Callable[..., GitUser],
) -> None:
    url, creds = served
    remote = GitRemote(url, tmp_path / "state", credentials=creds)
    first = remote.fetch(["main"])["main"]
    assert remote.remote_head("main") == first

    user = git_user(bare_remote)
    new = user.commit({"tasks/more.yaml": "a: 1\n"}, "Add more")
    user.push()

    assert remote.remote_head("main") == new
    assert new not in remote.repository  # the poll downloaded nothing
    assert remote.local_head("main") == first

    assert remote.fetch(["main"]) == {"main": new}
    assert new in remote.repository
    assert remote.read_tree_files("main", "tasks/more.yaml") == {}  # a file, not a folder
    assert remote.read_tree_files("main")["tasks/more.yaml"] == b"a: 1\n"


def test_remote_head_of_a_missing_branch_is_none(bare_remote: Path, tmp_path: Path) -> None:
    remote = GitRemote(str(bare_remote), tmp_path / "state")
    assert remote.remote_head("reconciler-status") is None
    assert remote.remote_heads() == {"main": branch_head(bare_remote, "main")}


def test_missing_required_branch_is_an_error_and_missing_optional_is_not(
    bare_remote: Path, tmp_path: Path
) -> None:
    remote = GitRemote(str(bare_remote), tmp_path / "state")

    with pytest.raises(BranchNotFoundError, match="has no branch develop"):
        remote.fetch(["develop"], optional=["reconciler-status"])

    heads = remote.fetch(["main"], optional=["reconciler-status"])
    assert set(heads) == {"main"}
    assert remote.read_tree_files("reconciler-status", "status") == {}
    with pytest.raises(BranchNotFoundError):
        remote.resolve("reconciler-status")


def test_a_branch_deleted_on_the_remote_leaves_the_mirror(
    bare_remote: Path, tmp_path: Path, git_user: Callable[..., GitUser]
) -> None:
    user = git_user(bare_remote)
    user.push("reconciler-status")
    remote = GitRemote(str(bare_remote), tmp_path / "state")
    assert set(remote.fetch(["main"], optional=["reconciler-status"])) == {
        "main",
        "reconciler-status",
    }

    user.git("push", "--quiet", "origin", "--delete", "reconciler-status")

    assert set(remote.fetch(["main"], optional=["reconciler-status"])) == {"main"}
    assert remote.local_head("reconciler-status") is None


def test_force_pushed_history_replaces_the_mirrors_branch(
    bare_remote: Path, tmp_path: Path, git_user: Callable[..., GitUser]
) -> None:
    remote = GitRemote(str(bare_remote), tmp_path / "state")
    remote.fetch(["main"])
    user = git_user(bare_remote)
    user.checkout("rewritten", orphan=True)
    rewritten = user.commit({"only.txt": "new history\n"}, "Rewrite")
    user.push("main", force=True)

    assert remote.fetch(["main"]) == {"main": rewritten}
    assert set(remote.read_tree_files("main")) == {"only.txt"}


def test_the_mirror_survives_a_restart_and_forgets_another_remote(
    bare_remote: Path, git_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = GitRemote(str(bare_remote), state).fetch(["main"])["main"]
    assert GitRemote(str(bare_remote), state).local_head("main") == first

    other = make_bare_remote(git_root / "other.git", {"x.txt": "x\n"})
    switched = GitRemote(str(other), state)
    assert switched.local_head("main") is None  # no stale branch of the previous remote
    assert switched.fetch(["main"])["main"] == branch_head(other, "main")


def test_a_corrupt_mirror_is_recreated(bare_remote: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "state" / "mirror.git"
    mirror.mkdir(parents=True)
    (mirror / "HEAD").write_text("garbage")
    remote = GitRemote(str(bare_remote), tmp_path / "state")
    assert remote.fetch(["main"])["main"] == branch_head(bare_remote, "main")


def test_the_mirror_is_compacted_when_packs_pile_up(
    bare_remote: Path, tmp_path: Path, git_user: Callable[..., GitUser]
) -> None:
    remote = GitRemote(str(bare_remote), tmp_path / "state", pack_limit=3)
    remote.fetch(["main"], optional=["reconciler-status"])
    status = commit_files(remote, "reconciler-status", {"status/a.yaml": b"a\n"}, "Status")
    user = git_user(bare_remote)
    pack_dir = remote.path / "objects" / "pack"
    counts = []
    for n in range(6):
        user.commit({f"tasks/t{n}.yaml": f"n: {n}\n"}, f"Change {n}")
        user.push()
        remote.fetch(["main"], optional=["reconciler-status"])
        counts.append(len(list(pack_dir.glob("*.pack"))))

    assert counts == [2, 3, 1, 2, 3, 1]  # more than 3 packs: all reachable objects in one
    assert not list(remote.path.glob("objects/??/*"))  # the status commit's loose objects too
    head = remote.local_head("main")
    assert head == branch_head(bare_remote, "main")
    assert len(remote.read_tree_files("main", "tasks")) == 7
    assert remote.read_tree_files("reconciler-status") == {"status/a.yaml": b"a\n"}
    assert remote.local_head("reconciler-status") == status
    # Every commit of the history is still readable after its pack was replaced.
    walked = [c.message.strip() for c in remote.repository.walk(head)]
    assert walked == [*(f"Change {n}" for n in reversed(range(6))), "Initial commit"]
    assert commit_files(remote, "reconciler-status", {"status/b.yaml": b"b\n"}, "More")


def test_a_large_status_commit_is_packed_by_itself_not_with_the_whole_mirror(
    bare_remote: Path, tmp_path: Path
) -> None:
    remote = GitRemote(str(bare_remote), tmp_path / "state")
    remote.fetch(["main"], optional=["reconciler-status"])
    pack_dir = remote.path / "objects" / "pack"
    packs = sorted(pack_dir.glob("*.pack"))
    # Fewer files than a commit packs by itself (writer.PACKED): each blob is a loose object.
    records = {f"status/tasks/t{n}.yaml": f"n: {n}\n".encode() for n in range(200)}
    commit_files(remote, "reconciler-status", records, "Status of 200 entries")
    assert len(list(remote.path.glob("objects/??/*"))) > 200

    assert pack_loose(remote.repository) > 200

    assert not list(remote.path.glob("objects/??/*"))
    after = sorted(pack_dir.glob("*.pack"))
    assert set(packs) < set(after)  # the fetched pack is kept as it was; one more pack
    assert len(after) == len(packs) + 1
    reopened = GitRemote(str(bare_remote), tmp_path / "state")
    assert reopened.read_tree_files("reconciler-status") == records
    assert len(reopened.read_tree_files("main")) >= 1
