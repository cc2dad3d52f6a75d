"""Which declaration files a commit holds, and what changed since the commit loaded before.

With sources that list folders (`ListingSource`), two commits are compared the way Git
compares trees: folders with equal ids are skipped without being read, so the cost follows
the change, not the size of the repository. Other sources are walked whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from reconciler.declarations.files import FileKind, FileSource, Listing, ListingSource, join

SUFFIXES = (".yaml", ".yml")
_FILES = (FileKind.FILE, FileKind.EXECUTABLE)


def is_declaration_file(path: str, kind: FileKind) -> bool:
    return kind in _FILES and path.endswith(SUFFIXES)


@dataclass(slots=True)
class Changes:
    """What differs between two commits."""

    files: dict[str, str | None] = field(default_factory=dict)
    """Declaration files added or modified (path → Git id) or removed (path → None)."""
    paths: set[str] | None = field(default_factory=set)
    """Every path whose entry differs (the root `.` included), at every level the
    comparison went down to; None when unknown (anything may have changed)."""
    cuts: list[str] = field(default_factory=list)
    """Folders added, removed or replaced: anything below them may differ too."""

    def touched(self, watched: Mapping[str, object]) -> Iterator[str]:
        """The paths of `watched` whose entry may differ (all when unknown)."""
        if self.paths is None:
            yield from watched
            return
        for path in self.paths:
            if path in watched:
                yield path
        if self.cuts:
            prefixes = tuple(cut + "/" for cut in self.cuts)
            yield from (p for p in watched if p.startswith(prefixes) and p not in self.paths)


class Scope:
    """The declarations folder: what is inside it, and how to list it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._prefix = "" if folder == "." else folder + "/"

    def holds(self, path: str) -> bool:
        return not self._prefix or path == self.folder or path.startswith(self._prefix)

    def within(self, folder: str) -> bool:
        """Whether the declarations folder is `folder` or below it."""
        return folder in (".", self.folder) or self.folder.startswith(folder + "/")

    def files(self, source: FileSource, below: str | None = None) -> dict[str, str]:
        """path → Git id of every declaration file in the scope (under `below` only, when
        given: a folder inside the scope)."""
        top = below or self.folder
        if not isinstance(source, ListingSource):
            return {e.path: e.oid for e in source.walk(top) if is_declaration_file(e.path, e.kind)}
        entry = source.stat(top)
        if entry is None:
            return {}
        if entry.kind is not FileKind.DIRECTORY:
            return {entry.path: entry.oid} if is_declaration_file(entry.path, entry.kind) else {}
        found: dict[str, str] = {}
        folders = [entry.path]
        while folders:
            folder = folders.pop()
            for name, (kind, oid) in source.children(folder).items():
                path = join(folder, name)
                if kind is FileKind.DIRECTORY:
                    folders.append(path)
                elif is_declaration_file(name, kind):
                    found[path] = oid
        return found


def compare(
    old: ListingSource, new: ListingSource, scope: Scope, known: Iterable[str]
) -> Changes:
    """What differs from `old` to `new`, both listing sources; `known` are the declaration
    files of `old` (to find those below a folder that disappeared). Whatever `old` raises
    (a commit pruned since) propagates: the caller compares whole instead."""
    changes = Changes()
    assert changes.paths is not None
    old_root, new_root = old.stat("."), new.stat(".")
    if old_root is None or new_root is None:
        raise LookupError("a repository without a root folder cannot be compared")
    if old_root.oid == new_root.oid:
        return changes
    changes.paths.add(".")
    folders = ["."]
    while folders:
        folder = folders.pop()
        before, after = old.children(folder), new.children(folder)
        _compare_folder(folder, before, after, scope=scope, changes=changes, folders=folders)
    for cut in changes.cuts:
        _cut(new, cut, scope, known, changes)
    return changes


def _compare_folder(
    folder: str,
    before: Listing,
    after: Listing,
    *,
    scope: Scope,
    changes: Changes,
    folders: list[str],
) -> None:
    assert changes.paths is not None
    for name in before.keys() | after.keys():
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        path = join(folder, name)
        changes.paths.add(path)
        a_folder = a is not None and a[0] is FileKind.DIRECTORY
        b_folder = b is not None and b[0] is FileKind.DIRECTORY
        if a_folder and b_folder:
            folders.append(path)
            continue
        if a_folder or b_folder:
            changes.cuts.append(path)
        if not scope.holds(path):
            continue
        if b is not None and not b_folder and is_declaration_file(name, b[0]):
            changes.files[path] = b[1]
        elif a is not None and not a_folder and is_declaration_file(name, a[0]):
            changes.files[path] = None


def _cut(
    new: ListingSource,
    cut: str,
    scope: Scope,
    known: Iterable[str],
    changes: Changes,
) -> None:
    """A folder that appeared, disappeared or replaced a file: its declaration files (or
    those of the declarations folder, when it lies below) are added or removed whole."""
    if scope.holds(cut):
        below = cut
    elif scope.within(cut):
        below = scope.folder
    else:
        return
    gone = below + "/"
    for path in known:
        if path.startswith(gone) or path == below:
            changes.files.setdefault(path, None)
    if new.stat(cut) is not None:
        changes.files.update(scope.files(new, below))


def full(old: Mapping[str, str], current: Mapping[str, str]) -> Changes:
    """Changes between two sets of declaration files, when the sources cannot be compared
    folder by folder: every other path counts as changed."""
    files: dict[str, str | None] = {p: oid for p, oid in current.items() if old.get(p) != oid}
    files.update((p, None) for p in old.keys() - current.keys())
    return Changes(files=files, paths=None)
