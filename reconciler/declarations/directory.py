"""A folder on disk as a `FileSource`, with the object ids Git would give its content.

`reconciler validate` reads a work tree through it; the daemon reads commits through the Git
source. Both give the same ids (so the same spec hashes) for the same content: blobs are
hashed as Git hashes them, trees are built from entries sorted the Git way, `.git` is
skipped, and folders holding no file do not exist, as in Git. Files ignored by `.gitignore`
are not skipped: a work tree with untracked files under a Stack's folder hashes differently
from the commit.

The folder is read as a snapshot: ids are computed once per instance, and `stat(".")` reads
the whole folder at once.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from reconciler.declarations.files import (
    FileEntry,
    FileKind,
    Listing,
    blob_id,
    join,
    normalize,
    tree_id,
)

_SKIPPED = frozenset({".git"})
UNREADABLE = "0" * 40
"""The id given to a file that cannot be read (Git's null id)."""
_CHUNK = 1 << 20


class DirectorySource:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._entries: dict[str, FileEntry | None] = {}
        self._children: dict[str, tuple[FileEntry, ...]] = {}
        self._listings: dict[str, Listing] = {}
        self._folders: set[str] = set()

    def __repr__(self) -> str:
        return f"DirectorySource({str(self.root)!r})"

    def walk(self, prefix: str = ".") -> Iterator[FileEntry]:
        top = self.stat(prefix)
        if top is None:
            return
        if top.kind is not FileKind.DIRECTORY:
            yield top
            return
        for child in self._list(top.path):
            if child.kind is FileKind.DIRECTORY:
                yield from self.walk(child.path)
            else:
                yield child

    def stat(self, path: str) -> FileEntry | None:
        rel = normalize(path)
        if rel is None or not self._reachable(rel):
            return None
        return self._entry(rel)

    def children(self, path: str) -> Listing:
        rel = normalize(path)
        # What was read already is answered as it was read: the folder as of then.
        top = self._entries[rel] if rel in self._entries else self.stat(path)
        if top is None or top.kind is not FileKind.DIRECTORY:
            return {}
        listing = self._listings.get(top.path)
        if listing is None:
            listing = {
                e.path.rpartition("/")[2]: (e.kind, e.oid) for e in self._list(top.path)
            }
            self._listings[top.path] = listing
        return listing

    def read(self, path: str) -> bytes:
        entry = self.stat(path)
        if entry is None:
            raise FileNotFoundError(path)
        full = self._full(entry.path)
        if entry.kind is FileKind.SYMLINK:
            return os.fsencode(os.readlink(full))
        if entry.kind is FileKind.DIRECTORY:
            raise IsADirectoryError(path)
        return full.read_bytes()

    def _full(self, rel: str) -> Path:
        return self.root if rel == "." else self.root / rel

    def _reachable(self, rel: str) -> bool:
        """Whether every folder above `rel` is a real folder: Git has no path through a
        symlink (`link/file` does not exist in a commit), nor inside `.git`."""
        parts = rel.split("/")
        if any(p in _SKIPPED for p in parts):
            return False
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in self._folders:
                try:
                    if not stat.S_ISDIR(os.lstat(self.root / folder).st_mode):
                        return False
                except OSError:
                    return False
                self._folders.add(folder)
        return True

    def _entry(self, rel: str) -> FileEntry | None:
        if rel not in self._entries:
            self._entries[rel] = self._stat(rel)
        return self._entries[rel]

    def _stat(self, rel: str) -> FileEntry | None:
        try:
            info = os.lstat(self._full(rel))
        except OSError:
            # Missing, or a name the system refuses (too long, a loop): not there.
            return None
        if stat.S_ISDIR(info.st_mode):
            children = self._list(rel)
            if not children and rel != ".":
                return None
            oid = tree_id((c.path.rpartition("/")[2], c.kind, c.oid) for c in children)
            return FileEntry(path=rel, kind=FileKind.DIRECTORY, oid=oid)
        if stat.S_ISLNK(info.st_mode):
            try:
                target = os.fsencode(os.readlink(self._full(rel)))
            except OSError:
                return None
            return FileEntry(path=rel, kind=FileKind.SYMLINK, oid=blob_id(target))
        if stat.S_ISREG(info.st_mode):
            kind = FileKind.EXECUTABLE if info.st_mode & stat.S_IXUSR else FileKind.FILE
            try:
                oid = _hash_file(self._full(rel), info.st_size)
            except OSError:
                oid = UNREADABLE  # listed all the same: reading it reports why it cannot be
            return FileEntry(path=rel, kind=kind, oid=oid)
        return None  # sockets, fifos, devices: nothing Git would store

    def _list(self, rel: str) -> tuple[FileEntry, ...]:
        if rel not in self._children:
            try:
                names = sorted(os.listdir(self._full(rel)))
            except OSError:
                names = []
            found = (self._entry(join(rel, name)) for name in names if name not in _SKIPPED)
            # Git's order (a folder sorts as `name/`), which makes walk() go in path order.
            self._children[rel] = tuple(sorted(
                (e for e in found if e is not None),
                key=lambda e: e.path + "/" if e.kind is FileKind.DIRECTORY else e.path,
            ))
        return self._children[rel]


def _hash_file(path: Path, size: int) -> str:
    """The blob id of a file, read in chunks so a large file is never held whole."""
    digest = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
