"""The declaration loader: every `*.yaml`/`*.yml` under a folder of a `FileSource` → the
desired state of that commit, with every problem located as `path:line:col: field: message`.

Loading is incremental. Per-file results are kept by (path, Git blob id), so after a
commit that changes one file, one file is parsed; the cross-file checks, Defaults, hashing
and path lookups then run over cached results and are cheap. The parsed data can be saved
to a file in the state dir so a restart does not parse everything again:

    loader = DeclarationLoader(path=".", cache_file=state_dir / "declarations.cache")
    desired = loader.load(files, revision=revision)   # files: any FileSource
    loader.save_cache()                                # when convenient; cheap if unchanged

One loader serves one repository from one thread.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from reconciler.declarations.assemble import EntryMemo, assemble
from reconciler.declarations.cache import Key, read_cache, write_cache
from reconciler.declarations.checks import Pending
from reconciler.declarations.documents import FileResult, analyse
from reconciler.declarations.entries import DesiredState, LoadError, Location
from reconciler.declarations.files import FileEntry, FileKind, FileSource, normalize
from reconciler.declarations.parse import RawFile, SyntaxProblem, parse_file
from reconciler.declarations.paths import ModuleScanner
from reconciler.declarations.positions import SourceMap, field_path
from reconciler.types import Revision

SUFFIXES = (".yaml", ".yml")
_BULK = 200
"""Reading at least this many files at once runs with the garbage collector paused, and
what was read is then moved out of its reach (`gc.freeze`): those objects are long-lived
and acyclic (refcounting frees them when a later commit replaces them), and collections
that scan a heap of 10,000 declarations again and again triple the time of a load."""


@dataclass(frozen=True, slots=True)
class LoadStats:
    files: int = 0
    """YAML files seen under the declarations folder."""
    parsed: int = 0
    """Of those, files parsed by this load (the others came from the cache)."""
    validated: int = 0
    """Files validated by this load (parsed, or taken from the persisted cache)."""


class DeclarationLoader:
    def __init__(self, *, path: str = ".", cache_file: Path | None = None) -> None:
        folder = normalize(path)
        if folder is None:
            raise ValueError(f"{path!r}: the declarations folder must be inside the repository")
        self.path = folder
        self.cache_file = cache_file
        self.stats = LoadStats()
        self._raw: dict[Key, RawFile] | None = None
        self._results: dict[Key, FileResult] = {}
        self._maps: dict[Key, SourceMap] = {}
        self._previous: set[Key] = set()
        self._dirty = False
        self._modules = ModuleScanner()
        self._entries = EntryMemo()

    def load(self, files: FileSource, revision: Revision | None = None) -> DesiredState:
        """The desired state of what `files` holds. Never raises for anything wrong in the
        files: problems are in the result. A failure of `files` itself (an unreadable object
        database) propagates."""
        if self._raw is None:
            self._raw = read_cache(self.cache_file) if self.cache_file is not None else {}
        candidates = [e for e in files.walk(self.path) if _is_declaration_file(e)]
        results, parsed, validated = self._file_results(files, candidates)
        desired = assemble(
            results,
            files,
            revision=revision,
            scanner=self._modules,
            locate=lambda problem: self._locate(files, problem),
            memo=self._entries,
        )
        self._retain({(e.path, e.oid) for e in candidates})
        self.stats = LoadStats(files=len(candidates), parsed=parsed, validated=validated)
        return desired

    def save_cache(self) -> None:
        """Write the parsed data of the files of the last two loads to `cache_file`."""
        if self.cache_file is None or self._raw is None or not self._dirty:
            return
        write_cache(self.cache_file, self._raw)
        self._dirty = False

    def _file_results(
        self, files: FileSource, candidates: list[FileEntry]
    ) -> tuple[list[FileResult], int, int]:
        assert self._raw is not None
        missing = [e for e in candidates if (e.path, e.oid) not in self._results]
        parsed = 0
        paused = len(missing) >= _BULK and gc.isenabled()
        if paused:
            gc.disable()
        try:
            for entry in missing:
                key = (entry.path, entry.oid)
                raw = self._raw.get(key)
                if raw is None:
                    raw = _parse(files, entry.path)
                    parsed += 1
                    # Parsed data is kept only to be saved: validated models are what loads use.
                    if self.cache_file is not None:
                        self._raw[key] = raw
                        self._dirty = True
                self._results[key] = analyse(
                    entry.path, entry.oid, raw, read_text=_reader(files, entry.path)
                )
        finally:
            if paused:
                gc.freeze()
                gc.enable()
        return [self._results[(e.path, e.oid)] for e in candidates], parsed, len(missing)

    def _locate(self, files: FileSource, problem: Pending) -> LoadError:
        key = (problem.file.path, problem.file.oid)
        if key not in self._maps:
            self._maps[key] = SourceMap(_reader(files, problem.file.path)())
        (line, column), path = self._maps[key].locate(
            problem.document.index,
            problem.loc,
            at_key=problem.at_key,
            document_line=problem.document.line,
        )
        return LoadError(
            location=Location(path=problem.file.path, line=line, column=column),
            field=field_path(path) or None,
            message=problem.message,
            entry=problem.entry,
        )

    def _retain(self, current: set[Key]) -> None:
        """Keep what the last two loads used (the daemon also loads the commit an entry was
        last applied at), drop the rest."""
        keep = current | self._previous
        self._previous = current
        for cache in (self._results, self._maps):
            for key in cache.keys() - keep:
                del cache[key]
        assert self._raw is not None
        stale = self._raw.keys() - keep
        if stale:
            for key in stale:
                del self._raw[key]
            self._dirty = True
        self._modules.forget_unused()


def _parse(files: FileSource, path: str) -> RawFile:
    try:
        data = files.read(path)
    except (PermissionError, FileNotFoundError, IsADirectoryError) as err:
        # A work tree can hold a file nobody may read, or lose one while it is read.
        problem = SyntaxProblem(1, 1, f"cannot read the file: {err.strerror or err}")
        return RawFile(problem=problem)
    return parse_file(data)


def _is_declaration_file(entry: FileEntry) -> bool:
    return entry.kind in (FileKind.FILE, FileKind.EXECUTABLE) and entry.path.endswith(SUFFIXES)


def _reader(files: FileSource, path: str) -> _Text:
    return _Text(files, path)


class _Text:
    """Reads a file's text on demand (only when a problem in it must be located)."""

    def __init__(self, files: FileSource, path: str) -> None:
        self._files = files
        self._path = path

    def __call__(self) -> str:
        try:
            return self._files.read(self._path).decode("utf-8-sig", "replace")
        except OSError:
            return ""  # positions fall back to the start of the document


def load_declarations(
    files: FileSource, *, path: str = ".", revision: Revision | None = None
) -> DesiredState:
    """Load once, without keeping anything: for commands that load a single commit."""
    return DeclarationLoader(path=path).load(files, revision=revision)
