"""Reading commits from the object database: files as the loader sees them, which paths
changed between two commits, and a commit written out into a folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pygit2
import pytest

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.files import FileKind
from reconciler.source.tree import (
    GitTreeSource,
    _TreeCache,
    changed_paths,
    materialize,
    open_repository,
    resolve_revision,
)
from tests.declarations.repo import Repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "work")
    repo.write({
        "README.md": "# demo\n",
        "stacks/net/main.tf": "# net\n",
        "stacks/net/vars/prod.tfvars": "x = 1\n",
        "tasks/a.yaml": "a: 1\n",
        "tools/run.sh": "#!/bin/sh\necho run\n",
    })
    (repo.root / "tools/run.sh").chmod(0o755)
    repo.link("current", "stacks/net").link("escape", "../../outside").link("abs", "/etc/passwd")
    repo.commit("first")
    return repo


def test_a_commit_reads_like_its_checkout(repo: Repo) -> None:
    git_repo = open_repository(repo.root)
    files = GitTreeSource(git_repo, "HEAD")
    assert list(files.walk()) == list(DirectorySource(repo.root).walk())
    assert [e.path for e in files.walk("stacks")] == [
        "stacks/net/main.tf", "stacks/net/vars/prod.tfvars"]
    kinds = {p: files.stat(p).kind for p in ("stacks", "tools/run.sh", "current", "README.md")}
    assert kinds == {
        "stacks": FileKind.DIRECTORY, "tools/run.sh": FileKind.EXECUTABLE,
        "current": FileKind.SYMLINK, "README.md": FileKind.FILE,
    }
    assert files.stat(".").oid == repo.git("rev-parse", "HEAD^{tree}")
    assert files.read("current") == b"stacks/net"
    assert files.read("./stacks//net/main.tf") == b"# net\n"
    # Symlinks are not followed: a path through one does not exist in a commit.
    assert files.stat("current/main.tf") is None
    assert files.stat("../x") is None
    with pytest.raises(FileNotFoundError):
        files.read("nope.txt")
    with pytest.raises(IsADirectoryError):
        files.read("stacks")


def test_folders_list_like_their_checkout(repo: Repo) -> None:
    files = GitTreeSource(open_repository(repo.root), "HEAD")
    folder = DirectorySource(repo.root)
    for path in (".", "stacks", "./stacks/net/", "stacks/net/vars"):
        assert files.children(path) == folder.children(path), path
    assert dict(files.children("stacks")) == {
        "net": (FileKind.DIRECTORY, files.stat("stacks/net").oid)}  # type: ignore[union-attr]
    for nothing in ("README.md", "current", "nope", "../x", "tools/run.sh/x"):
        assert files.children(nothing) == folder.children(nothing) == {}, nothing


def test_trees_read_stay_within_a_bound(repo: Repo) -> None:
    """A daemon reads a new root tree with every commit, for months: what it keeps of them
    is bounded by the entries held, not by the number of commits."""
    git_repo = open_repository(repo.root)
    cache = _TreeCache(entries=20)
    roots = []
    for i in range(6):
        repo.write({"README.md": f"# version {i}\n"})
        roots.append(repo.git("rev-parse", f"{repo.commit(f'v{i}')}^{{tree}}"))
        cache.children(git_repo, roots[-1])
    assert cache.trees.held <= 20
    assert cache.trees.get(roots[-1]) is cache.children(git_repo, roots[-1])
    assert cache.trees.get(roots[0]) is None


def test_bare_repository_and_submodules(repo: Repo, tmp_path: Path) -> None:
    commit = repo.git("rev-parse", "HEAD")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{commit},vendor/lib")
    repo.git("commit", "--quiet", "-m", "add a submodule entry")
    bare = tmp_path / "bare.git"
    repo.git("clone", "--quiet", "--bare", str(repo.root), str(bare))
    files = GitTreeSource(pygit2.Repository(str(bare)), "main")
    assert files.stat("vendor/lib") is None
    assert "vendor/lib" not in [e.path for e in files.walk()]
    assert files.read("README.md") == b"# demo\n"


def test_revisions_by_name(repo: Repo) -> None:
    first = repo.git("rev-parse", "HEAD")
    repo.git("tag", "-a", "v1", "-m", "release")
    repo.write({"README.md": "# changed\n"})
    second = repo.commit("second")
    git_repo = open_repository(repo.root / "stacks" / "net")  # from a folder inside
    assert resolve_revision(git_repo, "HEAD") == second
    assert resolve_revision(git_repo, "main~1") == first
    assert resolve_revision(git_repo, "v1") == first  # an annotated tag, peeled
    assert resolve_revision(git_repo, first[:10]) == first
    with pytest.raises(LookupError, match="'nope' is not a commit"):
        resolve_revision(git_repo, "nope")


def test_open_repository_outside_any(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not inside a Git repository"):
        open_repository(tmp_path)


def test_changed_paths_match_git(repo: Repo) -> None:
    git_repo = open_repository(repo.root)
    base = repo.git("rev-parse", "HEAD")
    repo.write({"stacks/net/main.tf": "# net v2\n", "docs/new.md": "new\n"})
    repo.remove("tasks/a.yaml", "current")
    repo.link("current", "stacks")
    (repo.root / "README.md").chmod(0o755)
    head = repo.commit("second")
    expected = repo.git("diff", "--name-only", "--no-renames", base, head).splitlines()
    assert changed_paths(git_repo, base, head) == sorted(expected)
    assert changed_paths(git_repo, head, head) == []
    assert changed_paths(git_repo, None, base) == sorted(
        repo.git("ls-tree", "-r", "--name-only", base).splitlines())


def test_materialize_a_commit(repo: Repo, tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    materialize(open_repository(repo.root), "HEAD", dest)
    assert (dest / "stacks/net/main.tf").read_text() == "# net\n"
    assert stat.S_IMODE((dest / "tools/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "README.md").stat().st_mode) == 0o644
    assert os.readlink(dest / "current") == "stacks/net"
    # Links leading out of the copy are left out.
    assert not (dest / "escape").is_symlink()
    assert not (dest / "abs").is_symlink()


def test_materialize_one_folder_over_an_old_copy(repo: Repo, tmp_path: Path) -> None:
    dest = tmp_path / "stack"
    dest.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (dest / "main.tf").symlink_to(victim)  # left over: must be replaced, not written through
    materialize(open_repository(repo.root), "HEAD", dest, "stacks/net")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "main.tf", "vars", "vars/prod.tfvars"]
    assert (dest / "main.tf").read_text() == "# net\n"
    assert not (dest / "main.tf").is_symlink()
    assert victim.read_text() == "keep me\n"
    with pytest.raises(FileNotFoundError):
        materialize(open_repository(repo.root), "HEAD", tmp_path / "x", "stacks/none")
    with pytest.raises(NotADirectoryError):
        materialize(open_repository(repo.root), "HEAD", tmp_path / "x", "README.md")
