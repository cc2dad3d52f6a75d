"""The file-source port: the loader reads declarations through it, from a folder on disk or
from a commit in a Git object database, and gets the same Git object ids from both.

Paths are POSIX, relative to the repository root, without a leading `./`; the root itself is
`.`. Neither source follows symlinks on its own: a symlink is an entry whose content is its
target, exactly as Git stores it. Following them (and refusing those that leave the
repository) is the loader's job, so both sources behave the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class FileKind(StrEnum):
    FILE = "file"
    EXECUTABLE = "executable"
    SYMLINK = "symlink"
    DIRECTORY = "directory"

    @property
    def git_mode(self) -> str:
        """The mode Git writes for this kind in a tree object."""
        return _GIT_MODES[self]


_GIT_MODES = {
    FileKind.FILE: "100644",
    FileKind.EXECUTABLE: "100755",
    FileKind.SYMLINK: "120000",
    FileKind.DIRECTORY: "40000",
}


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    """POSIX path relative to the repository root, no leading './'."""
    kind: FileKind
    oid: str
    """The Git object id (blob or tree), hex; identical for the same content in both sources."""


class FileSource(Protocol):
    def walk(self, prefix: str = ".") -> Iterator[FileEntry]:
        """Every non-directory entry below `prefix`, recursively, in path order."""
        ...

    def stat(self, path: str) -> FileEntry | None:
        """The entry at `path` (a directory included), without following symlinks; None when
        nothing is there."""
        ...

    def read(self, path: str) -> bytes:
        """The content of a file (or a symlink's target). FileNotFoundError when absent."""
        ...


Listing = Mapping[str, tuple[FileKind, str]]
"""The entries directly inside a folder: name → (kind, Git id). Not to be modified."""


@runtime_checkable
class ListingSource(FileSource, Protocol):
    """A source that can also list one folder. Both sources here can; with it, the loader
    compares two commits folder by folder, skipping folders whose Git ids are equal, instead
    of walking every file of both."""

    def children(self, path: str) -> Listing:
        """The entries directly inside the folder at `path`; empty when no folder is there.
        Once `stat(".")` has answered, the source answers as of that moment: two of them
        can be compared later."""
        ...


def normalize(path: str) -> str | None:
    """`path` as the sources spell it (`a/b`, or `.` for the root); None when it is absolute
    or climbs out with `..`."""
    if path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts) or "."


def join(folder: str, name: str) -> str:
    return name if folder in (".", "") else f"{folder}/{name}"


def blob_id(data: bytes) -> str:
    """Git's id of a blob with this content: sha1 of `blob <size>\\0<data>`."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def tree_id(entries: Iterable[tuple[str, FileKind, str]]) -> str:
    """Git's id of a tree holding (name, kind, oid) entries, in any order."""
    ordered = sorted(entries, key=lambda e: e[0] + "/" if e[1] is FileKind.DIRECTORY else e[0])
    body = b"".join(
        f"{kind.git_mode} {name}".encode("utf-8", "surrogateescape") + b"\0" + bytes.fromhex(oid)
        for name, kind, oid in ordered
    )
    digest = hashlib.sha1(b"tree %d\0" % len(body), usedforsecurity=False)
    digest.update(body)
    return digest.hexdigest()
