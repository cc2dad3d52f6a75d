"""Reading a commit straight from the Git object database, with no work tree.

- `GitTreeSource`: a commit as a `FileSource` for the declaration loader.
- `changed_paths`: which files differ between two commits, skipping equal subtrees.
- `materialize`: a commit's files (or one folder of them) written into a directory.
- `open_repository` / `resolve_revision`: a local repository and a commit in it, by name.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pygit2
from pygit2.enums import FileMode

from reconciler.declarations.files import FileEntry, FileKind, Listing, join, normalize
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
    """The files of one commit. Object ids come from Git, so nothing is hashed here.

    Trees are content-addressed, so what was read from one is kept by its id and shared by
    every source: loading the next commit reads only the trees that changed."""

    def __init__(self, repo: pygit2.Repository, revision: str) -> None:
        commit = _commit(repo, revision)
        self.repo = repo
        self.revision = Revision(str(commit.id))
        self._root = str(commit.tree.id)

    def __repr__(self) -> str:
        return f"GitTreeSource({self.repo.path!r}, {self.revision[:12]})"

    def walk(self, prefix: str = ".") -> Iterator[FileEntry]:
        top = self.stat(prefix)
        if top is None:
            return
        if top.kind is not FileKind.DIRECTORY:
            yield top
            return
        yield from _CACHE.below(self.repo, top.path, top.oid)

    def children(self, path: str) -> Listing:
        rel = normalize(path)
        if rel == ".":
            return _CACHE.children(self.repo, self._root)
        top = self.stat(path) if rel is not None else None
        if top is None or top.kind is not FileKind.DIRECTORY:
            return {}
        return _CACHE.children(self.repo, top.oid)

    def stat(self, path: str) -> FileEntry | None:
        rel = normalize(path)
        if rel is None:
            return None
        if rel == ".":
            return FileEntry(path=".", kind=FileKind.DIRECTORY, oid=self._root)
        tree = self._root
        parts = rel.split("/")
        for depth, name in enumerate(parts, 1):
            found = _CACHE.children(self.repo, tree).get(name)
            if found is None:
                return None
            kind, oid = found
            if depth == len(parts):
                return FileEntry(path=rel, kind=kind, oid=oid)
            if kind is not FileKind.DIRECTORY:
                return None
            tree = oid
        return None

    def read(self, path: str) -> bytes:
        entry = self.stat(path)
        if entry is None:
            raise FileNotFoundError(path)
        if entry.kind is FileKind.DIRECTORY:
            raise IsADirectoryError(path)
        blob = self.repo[entry.oid]
        assert isinstance(blob, pygit2.Blob)
        return blob.data


class _Recent:
    """Values by key, the least recently used dropped first once the values together hold
    more than `limit` items."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._values: OrderedDict[Any, Any] = OrderedDict()
        self.held = 0

    def get(self, key: Any) -> Any:
        found = self._values.get(key)
        if found is not None:
            self._values.move_to_end(key)
        return found

    def put(self, key: Any, value: Any) -> None:
        if key in self._values:  # read by another thread meanwhile
            return
        self._values[key] = value
        self.held += len(value) + 1
        while self.held > self._limit and len(self._values) > 1:
            self.held -= len(self._values.popitem(last=False)[1]) + 1


class _TreeCache:
    """What has been read from trees, by tree id: each tree's entries, and every file below
    it. Shared by threads, and bounded by the entries it holds: every commit brings a new
    root tree, which in a large repository lists thousands of entries, so a bound on the
    number of trees would let a daemon grow for months. The default holds the trees of a
    50,000-file repository (tens of MB)."""

    def __init__(self, entries: int = 100_000) -> None:
        self._lock = threading.Lock()
        self.trees = _Recent(entries)
        self._below = _Recent(entries)

    def children(self, repo: pygit2.Repository, tree_id: str) -> dict[str, tuple[FileKind, str]]:
        with self._lock:
            found: dict[str, tuple[FileKind, str]] | None = self.trees.get(tree_id)
        if found is not None:
            return found
        tree = repo[tree_id]
        assert isinstance(tree, pygit2.Tree)
        listing: dict[str, tuple[FileKind, str]] = {}
        for obj in tree:
            kind = _KINDS.get(obj.filemode)
            if obj.name is not None and kind is not None:  # submodules are not files here
                # The same names come back in every version of a folder: one copy of each.
                listing[sys.intern(obj.name)] = (kind, str(obj.id))
        with self._lock:
            self.trees.put(tree_id, listing)
        return listing

    def below(self, repo: pygit2.Repository, prefix: str, tree_id: str) -> tuple[FileEntry, ...]:
        """Every non-directory entry below the tree, with paths under `prefix`, in path order
        (Git sorts a folder as `name/`, which is what sorting full paths gives)."""
        key = (prefix, tree_id)
        with self._lock:
            found: tuple[FileEntry, ...] | None = self._below.get(key)
        if found is not None:
            return found
        entries: list[FileEntry] = []
        for name, (kind, oid) in self.children(repo, tree_id).items():
            path = join(prefix, name)
            if kind is FileKind.DIRECTORY:
                entries.extend(self.below(repo, path, oid))
            else:
                entries.append(FileEntry(path=path, kind=kind, oid=oid))
        result = tuple(entries)
        with self._lock:
            self._below.put(key, result)
        return result


_CACHE = _TreeCache()


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
