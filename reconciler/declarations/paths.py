"""Repository paths a declaration points at: a Stack's module folder (and the local modules
it calls, and its var files), the repository files a Task copies.

Each is followed through symlinks that stay inside the repository and refused when one
leads out. What is found becomes part of the entry's version: the Git id of every folder
and file the run will use is recorded in `Entry.sources` and hashed with the spec, so
editing `main.tf` or a copied script counts as a change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.declarations.files import FileEntry, FileKind, FileSource, join, normalize
from reconciler.declarations.positions import Segment

if TYPE_CHECKING:
    # The specs call into this module to resolve what they use (`EntrySpec.resolve_sources`).
    from reconciler.declarations.models import StackSpec, TaskSpec

MAX_SYMLINKS = 40
MAX_TASK_FILES_BYTES = 1_000_000
"""A Task's files become one ConfigMap on Kubernetes, which holds at most 1 MiB."""

_MODULE_SOURCE = re.compile(r'^[ \t]*source[ \t]*=[ \t]*"(\.\.?/[^"\n]*)"', re.MULTILINE)
"""Spaces, not `\\s`: with MULTILINE, `^\\s*` scans from every line of a run of blank lines
to its end, quadratic in the file (a megabyte of newlines in a .tf file: over an hour)."""
_CONFIG_SUFFIXES = (".tf", ".tf.json")


class PathProblem(ValueError):
    """A path that cannot be used; the message completes `PATH ...`."""


@dataclass(frozen=True, slots=True)
class Problem:
    loc: tuple[Segment, ...]
    message: str


@dataclass(slots=True)
class Resolution:
    sources: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


class Recorder:
    """A `FileSource` that notes every path looked up through it. What a declaration's paths
    resolve to depends only on what those paths are (a folder's listing and a file's content
    follow from their Git ids), so it needs resolving again only when one of them changes."""

    __slots__ = ("_files", "seen")

    def __init__(self, files: FileSource) -> None:
        self._files = files
        self.seen: set[str] = set()

    def walk(self, prefix: str = ".") -> Iterator[FileEntry]:
        self._note(prefix)
        return self._files.walk(prefix)

    def stat(self, path: str) -> FileEntry | None:
        self._note(path)
        return self._files.stat(path)

    def read(self, path: str) -> bytes:
        self._note(path)
        return self._files.read(path)

    def _note(self, path: str) -> None:
        rel = normalize(path)
        if rel is not None:  # a path outside the repository is never there
            self.seen.add(rel)


def resolve(files: FileSource, path: str) -> FileEntry:
    """The entry `path` leads to, following symlinks as long as they stay inside the
    repository. Raises PathProblem saying why not."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not done:
                raise PathProblem("leaves the repository")
            done.pop()
            continue
        done.append(part)
        here = "/".join(done)
        entry = files.stat(here)
        if entry is None:
            missing = "" if here == path.strip("/") else f" ({here} is missing)"
            raise PathProblem(f"does not exist{missing}")
        if entry.kind is FileKind.SYMLINK:
            hops += 1
            if hops > MAX_SYMLINKS:
                raise PathProblem(f"goes through a symlink loop ({here})")
            try:
                target = files.read(here).decode("utf-8", "surrogateescape")
            except OSError as err:
                raise PathProblem(f"cannot be read ({here}: {err.strerror or err})") from None
            if target.startswith("/"):
                raise PathProblem(f"goes through symlink {here} pointing outside the repository")
            done.pop()
            if _climbs_out(done, target):
                raise PathProblem(f"goes through symlink {here} pointing outside the repository")
            pending = target.split("/") + pending
        elif pending and entry.kind is not FileKind.DIRECTORY:
            raise PathProblem(f"does not exist ({here} is not a folder)")
    final = files.stat("/".join(done) or ".")
    if final is None:
        raise PathProblem("does not exist")
    return final


def _climbs_out(base: list[str], target: str) -> bool:
    depth = len(base)
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


class ModuleScanner:
    """Lists Terraform folders and finds the local modules (`source = "../modules/x"`) they
    call. Results are kept by path and Git tree id: an unchanged folder is read once."""

    def __init__(self) -> None:
        self._listings: dict[tuple[str, str], tuple[FileEntry, ...]] = {}
        self._calls: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._used: set[tuple[str, str]] = set()

    def listing(self, files: FileSource, folder: FileEntry) -> tuple[FileEntry, ...]:
        """The files directly inside `folder` (not in its subfolders)."""
        key = (folder.path, folder.oid)
        self._used.add(key)
        if key not in self._listings:
            depth = 0 if folder.path == "." else folder.path.count("/") + 1
            found = (e for e in files.walk(folder.path) if e.path.count("/") == depth)
            self._listings[key] = tuple(found)
        return self._listings[key]

    def calls(self, files: FileSource, folder: FileEntry) -> tuple[tuple[str, str], ...]:
        """(file, source) of every local module call in the folder's own *.tf files."""
        key = (folder.path, folder.oid)
        if key not in self._calls:
            found: list[tuple[str, str]] = []
            for entry in self.listing(files, folder):
                if entry.path.endswith(".tf") and entry.kind is not FileKind.SYMLINK:
                    try:
                        text = files.read(entry.path).decode("utf-8", "replace")
                    except OSError:
                        continue  # the engine reports it; nothing to learn here
                    found.extend((entry.path, m) for m in _MODULE_SOURCE.findall(text))
            self._calls[key] = tuple(found)
        return self._calls[key]

    def forget_unused(self) -> None:
        """Drop what the last load did not use; call once per load, after it."""
        for cache in (self._listings, self._calls):
            for key in cache.keys() - self._used:
                del cache[key]
        self._used = set()


def stack_sources(files: FileSource, spec: StackSpec, scanner: ModuleScanner) -> Resolution:
    """The module folder of a Stack, local modules it calls (recursively) and var files."""
    out = Resolution()
    try:
        folder = resolve(files, spec.path)
    except PathProblem as err:
        out.problems.append(Problem(("spec", "path"), f"{spec.path} {err}"))
        return out
    if folder.kind is not FileKind.DIRECTORY:
        out.problems.append(Problem(("spec", "path"), f"{spec.path} is not a folder"))
        return out
    top = scanner.listing(files, folder)
    if not any(e.path.endswith(_CONFIG_SUFFIXES) for e in top):
        message = f"{spec.path} holds no *.tf file: it is not a Terraform/OpenTofu root module"
        out.problems.append(Problem(("spec", "path"), message))
        return out
    out.sources[spec.path] = folder.oid
    _linked_files(files, spec.path, top, out)
    _modules(files, folder.path, folder, scanner, out, seen={folder.path})
    for i, name in enumerate(spec.var_files):
        nominal = join(spec.path, name)
        try:
            entry = resolve(files, nominal)
        except PathProblem as err:
            out.problems.append(Problem(("spec", "varFiles", i), f"{nominal} {err}"))
            continue
        if entry.kind is FileKind.DIRECTORY:
            out.problems.append(Problem(("spec", "varFiles", i), f"{nominal} is a folder"))
        elif not entry.path.startswith(folder.path + "/") and folder.path != ".":
            out.sources[nominal] = entry.oid  # outside the module folder's own tree id
    return out


def _linked_files(
    files: FileSource, nominal: str, top: Sequence[FileEntry], out: Resolution
) -> None:
    """Symlinked *.tf files: the folder's tree id covers the link, not what it points at."""
    for entry in top:
        if entry.kind is FileKind.SYMLINK and entry.path.endswith(_CONFIG_SUFFIXES):
            shown = join(nominal, entry.path.rpartition("/")[2])
            try:
                target = resolve(files, entry.path)
            except PathProblem as err:
                out.problems.append(Problem(("spec", "path"), f"{shown} {err}"))
                continue
            out.sources[shown] = target.oid


def _modules(
    files: FileSource,
    root: str,
    folder: FileEntry,
    scanner: ModuleScanner,
    out: Resolution,
    *,
    seen: set[str],
) -> None:
    for tf_file, source in scanner.calls(files, folder):
        shown = f"module source {source!r} in {tf_file}"
        wanted = normalize_within(join(folder.path, source))
        if wanted is None:
            out.problems.append(Problem(("spec", "path"), f"{shown} leaves the repository"))
            continue
        try:
            module = resolve(files, wanted)
        except PathProblem as err:
            out.problems.append(Problem(("spec", "path"), f"{shown}: {wanted} {err}"))
            continue
        if module.kind is not FileKind.DIRECTORY:
            out.problems.append(Problem(("spec", "path"), f"{shown}: {wanted} is not a folder"))
            continue
        if module.path in seen:
            continue
        seen.add(module.path)
        if not (root == "." or module.path.startswith(root + "/")):
            out.sources[module.path] = module.oid  # the stack folder's tree id covers the rest
        _modules(files, root, module, scanner, out, seen=seen)


def normalize_within(path: str) -> str | None:
    """`a/b/../c` → `a/c`; None when `..` climbs above the root."""
    done: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if not done:
                return None
            done.pop()
        elif part not in ("", "."):
            done.append(part)
    return normalize("/".join(done))


def task_files(files: FileSource, spec: TaskSpec) -> Resolution:
    """A Task's files with their content: inline text as written, repository files read at
    this commit (their blob ids go into `sources`)."""
    out = Resolution()
    for name, value in spec.files.items():
        if isinstance(value, str):  # inline text; else a RepositoryFile
            out.files[name] = value
            continue
        loc: tuple[Segment, ...] = ("spec", "files", name, "path")
        try:
            entry = resolve(files, value.path)
        except PathProblem as err:
            out.problems.append(Problem(loc, f"{value.path} {err}"))
            continue
        if entry.kind is FileKind.DIRECTORY:
            out.problems.append(Problem(loc, f"{value.path} is a folder; name a file"))
            continue
        try:
            out.files[name] = files.read(entry.path).decode("utf-8")
        except UnicodeDecodeError:
            out.problems.append(Problem(loc, f"{value.path} is not UTF-8 text"))
            continue
        except OSError as err:
            out.problems.append(Problem(loc, f"{value.path} cannot be read: {err.strerror}"))
            continue
        out.sources[value.path] = entry.oid
    size = sum(len(text.encode()) for text in out.files.values())
    if size > MAX_TASK_FILES_BYTES:
        message = (
            f"the files add up to {size} bytes; on Kubernetes they are one ConfigMap, "
            f"which holds at most {MAX_TASK_FILES_BYTES} bytes"
        )
        out.problems.append(Problem(("spec", "files"), message))
    return out
