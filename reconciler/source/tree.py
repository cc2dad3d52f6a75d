"""Reading a commit straight from the Git object database, with no work tree.

- `GitTreeSource`: a commit as a `FileSource` for the declaration loader.
- `changed_paths`: which files differ between two commits, skipping equal subtrees.
- `materialize`: a commit's files (or one folder of them) written into a directory.
- `open_repository` / `resolve_revision`: a local repository and a commit in it, by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pygit2
from pygit2.enums import FileMode

from reconciler.declarations.files import FileEntry, FileKind, join, normalize
from reconciler.types import Revision

_KINDS = {
    FileMode.BLOB: FileKind.FILE,
    FileMode.BLOB_EXECUTABLE: FileKind.EXECUTABLE,
    FileMode.LINK: FileKind.SYMLINK,
    FileMode.TREE: FileKind.DIRECTORY,
}


def open_repository(path: str | Path) -> pygit2.Repository:
    """The repository holding `path` (its work tree, a folder inside it, or a bare one).
    FileNotFoundError when there is none."""
    found = pygit2.discover_repository(str(path))
    if found is None:
        raise FileNotFoundError(f"{path} is not inside a Git repository")
    return pygit2.Repository(found)


def resolve_revision(repo: pygit2.Repository, revision: str) -> Revision:
    """The commit id a name (`HEAD`, `main`, `origin/main`, a tag, a short or full sha)
    points at. LookupError when it names no commit."""
    return Revision(str(_commit(repo, revision).id))


def _commit(repo: pygit2.Repository, revision: str) -> pygit2.Commit:
    try:
        found = repo.revparse_single(revision)
        commit = found.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as err:
        raise LookupError(f"{revision!r} is not a commit in this repository ({err})") from None
    assert isinstance(commit, pygit2.Commit)
    return commit


class GitTreeSource:
    """The files of one commit. Object ids come from Git, so nothing is hashed here."""

    def __init__(self, repo: pygit2.Repository, revision: str) -> None:
        commit = _commit(repo, revision)
        self.repo = repo
        self.revision = Revision(str(commit.id))
        self._tree = commit.tree

    def __repr__(self) -> str:
        return f"GitTreeSource({self.repo.path!r}, {self.revision[:12]})"

    def walk(self, prefix: str = ".") -> Iterator[FileEntry]:
        top = self.stat(prefix)
        if top is None:
            return
        if top.kind is not FileKind.DIRECTORY:
            yield top
            return
        tree = self._tree if top.path == "." else self._tree[top.path]
        assert isinstance(tree, pygit2.Tree)
        yield from _walk(tree, top.path)

    def stat(self, path: str) -> FileEntry | None:
        rel = normalize(path)
        if rel is None:
            return None
        if rel == ".":
            return FileEntry(path=".", kind=FileKind.DIRECTORY, oid=str(self._tree.id))
        obj = self._lookup(rel)
        if obj is None:
            return None
        kind = _KINDS.get(FileMode(obj.filemode))
        if kind is None:  # a submodule: a commit of another repository, not a file here
            return None
        return FileEntry(path=rel, kind=kind, oid=str(obj.id))

    def read(self, path: str) -> bytes:
        rel = normalize(path)
        obj = self._lookup(rel) if rel not in (None, ".") else None
        if rel == "." or isinstance(obj, pygit2.Tree):
            raise IsADirectoryError(path)
        if not isinstance(obj, pygit2.Blob):
            raise FileNotFoundError(path)
        return obj.data

    def _lookup(self, rel: str | None) -> pygit2.Object | None:
        if rel is None:
            return None
        try:
            return self._tree[rel]
        except KeyError:
            return None


def _walk(tree: pygit2.Tree, prefix: str) -> Iterator[FileEntry]:
    for obj in tree:
        name = obj.name
        if name is None:
            continue
        path = join(prefix, name)
        if isinstance(obj, pygit2.Tree):
            yield from _walk(obj, path)
            continue
        kind = _KINDS.get(FileMode(obj.filemode))
        if kind is not None:
            yield FileEntry(path=path, kind=kind, oid=str(obj.id))


def changed_paths(repo: pygit2.Repository, old: str | None, new: str) -> list[str]:
    """Paths of the files (symlinks included) added, removed or modified from `old` to `new`,
    sorted; every file of `new` when `old` is None. Subtrees with equal ids are skipped
    without being read, so the cost follows the change, not the size of the repository."""
    new_tree = _commit(repo, new).tree
    old_tree = _commit(repo, old).tree if old is not None else None
    found: list[str] = []
    _compare(old_tree, new_tree, "", found)
    return sorted(found)


def _compare(
    before: pygit2.Tree | None, after: pygit2.Tree | None, prefix: str, found: list[str]
) -> None:
    if before is not None and after is not None and before.id == after.id:
        return
    old = {obj.name: obj for obj in before} if before is not None else {}
    new = {obj.name: obj for obj in after} if after is not None else {}
    for name in old.keys() | new.keys():
        if name is None:
            continue
        a, b = old.get(name), new.get(name)
        if a is not None and b is not None and a.id == b.id and a.filemode == b.filemode:
            continue
        a_tree = a if isinstance(a, pygit2.Tree) else None
        b_tree = b if isinstance(b, pygit2.Tree) else None
        if a_tree is not None or b_tree is not None:
            _compare(a_tree, b_tree, f"{prefix}{name}/", found)
        if (a is not None and a_tree is None) or (b is not None and b_tree is None):
            found.append(prefix + name)


def materialize(
    repo: pygit2.Repository, revision: str, dest: Path, subpath: str = "."
) -> None:
    """Write the files of `revision` under `subpath` into `dest` (created if needed), so that
    `dest` holds what `subpath` holds: modes kept (executable or not), symlinks kept only
    when their target stays inside what is written, submodules left out. Existing files in
    `dest` with the same names are replaced; nothing is ever written through a symlink."""
    rel = normalize(subpath)
    if rel is None:
        raise ValueError(f"{subpath!r} is not a path inside the repository")
    root = _commit(repo, revision).tree
    tree = root if rel == "." else _subtree(root, rel, subpath)
    dest.mkdir(parents=True, exist_ok=True)
    _write_tree(repo, tree, dest, PurePosixPath())


def _subtree(root: pygit2.Tree, rel: str, subpath: str) -> pygit2.Tree:
    try:
        obj = root[rel]
    except KeyError:
        raise FileNotFoundError(f"{subpath} does not exist in this commit") from None
    if not isinstance(obj, pygit2.Tree):
        raise NotADirectoryError(f"{subpath} is not a folder in this commit")
    return obj


def _write_tree(repo: pygit2.Repository, tree: pygit2.Tree, dest: Path, at: PurePosixPath) -> None:
    for obj in tree:
        name = obj.name
        # A crafted object database can hold names no checkout should write.
        if name is None or name in ("", ".", "..", ".git") or "/" in name or "\0" in name:
            continue
        target = dest / name
        if isinstance(obj, pygit2.Tree):
            _make_folder(target)
            _write_tree(repo, obj, target, at / name)
            continue
        mode = FileMode(obj.filemode)
        if mode not in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE, FileMode.LINK):
            continue
        blob = repo[obj.id]
        assert isinstance(blob, pygit2.Blob)
        _remove(target)
        if mode is FileMode.LINK:
            link = blob.data.decode("utf-8", "surrogateescape")
            if _stays_inside(at, link):
                os.symlink(link, target)
            continue
        _write_file(target, blob.data, executable=mode is FileMode.BLOB_EXECUTABLE)


def _stays_inside(folder: PurePosixPath, link: str) -> bool:
    """Whether a symlink in `folder` pointing at `link` resolves inside the written tree."""
    if not link or link.startswith("/"):
        return False
    depth = len(folder.parts)
    for part in PurePosixPath(link).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part != ".":
            depth += 1
    return True


def _make_folder(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(exist_ok=True)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()


def _write_file(path: Path, data: bytes, *, executable: bool) -> None:
    mode = 0o755 if executable else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not drop the executable bit
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(data)
    finally:
        os.close(fd)


class RepositoryWorkspace:
    """The executors' `Workspace` port over a local repository: materialize a commit."""

    def __init__(self, repo: pygit2.Repository, subpath: str = ".") -> None:
        self.repo = repo
        self.subpath = subpath

    def materialize(self, revision: Revision, dest: Path) -> None:
        materialize(self.repo, revision, dest, self.subpath)


__all__ = [
    "GitTreeSource",
    "RepositoryWorkspace",
    "changed_paths",
    "materialize",
    "open_repository",
    "resolve_revision",
]
