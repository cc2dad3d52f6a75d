"""The file-source port: the loader reads declarations through it, from a folder on disk or
from a commit in a Git object database, and gets the same Git object ids from both."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict


class FileKind(StrEnum):
    FILE = "file"
    EXECUTABLE = "executable"
    SYMLINK = "symlink"
    DIRECTORY = "directory"


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
