"""The declaration loader: every `*.yaml`/`*.yml` under a folder of a `FileSource` → the
desired state of that commit, with every problem located as `path:line:col: field: message`.

Loading is incremental. The loader compares the commit with the one it loaded before
(folder by folder, skipping equal Git ids), parses and validates only the files that
changed, and checks again only what those files can affect (see `assemble`). The parsed
data can be saved to a file in the state dir so a restart does not parse everything again,
and beside it, now and then, a snapshot of everything loaded (`declarations.snapshot`), so a
restart does not validate or hash again what did not change since:

    loader = DeclarationLoader(path=".", cache_file=state_dir / "declarations.cache")
    desired = loader.load(files, revision=revision)   # files: any FileSource
    loader.save_cache()                                # when convenient; cheap if unchanged
    loader.save_snapshot()                             # off the way to a plan: may take a second

A restart from a snapshot of commit X that loads X reads back only what that load returned;
one that loads another commit Y (then, or at the next load) is an incremental load from X:
the files whose Git ids differ are loaded, the rest is as X left it.

One loader serves one repository from one thread.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from reconciler.declarations import snapshot
from reconciler.declarations.assemble import Assembly
from reconciler.declarations.cache import CacheFile, Key, dump_raw, load_raw
from reconciler.declarations.checks import Pending
from reconciler.declarations.documents import FileResult, analyse
from reconciler.declarations.entries import DesiredState, LoadError, Location
from reconciler.declarations.files import FileSource, ListingSource, normalize
from reconciler.declarations.parse import RawFile, SyntaxProblem, parse_file
from reconciler.declarations.paths import ModuleScanner
from reconciler.declarations.positions import SourceMap, field_path
from reconciler.declarations.scan import Changes, Scope, compare, full
from reconciler.types import Revision

_BULK = 200
"""Loading at least this many changed files at once runs with the garbage collector paused,
and what was built is then moved out of its reach (`gc.freeze`): those objects are
long-lived and acyclic (refcounting frees them when a later commit replaces them), and
collections that scan a heap of 10,000 declarations again and again triple the time of a
load."""
_SNAPSHOT_AFTER = 100
"""A new snapshot is saved once this many files, or a twentieth of them if more, changed
since the last one: saving 10,000 entries takes a second or so, restarting from a snapshot
costs a load of what changed since it."""


@dataclass(frozen=True, slots=True)
class LoadStats:
    files: int = 0
    """YAML files seen under the declarations folder."""
    parsed: int = 0
    """Of those, files parsed by this load (the others came from the cache)."""
    validated: int = 0
    """Files validated by this load (parsed, or taken from the persisted cache)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    """The first section of a snapshot: what a load of its commit returns."""

    revision: Revision
    desired: DesiredState
    files: int


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The second section: what the next loads start from, read only when one comes."""

    revision: Revision
    assembly: Assembly
    modules: ModuleScanner


class DeclarationLoader:
    def __init__(self, *, path: str = ".", cache_file: Path | None = None) -> None:
        folder = normalize(path)
        if folder is None:
            raise ValueError(f"{path!r}: the declarations folder must be inside the repository")
        self.path = folder
        self.cache_file = cache_file
        self.stats = LoadStats()
        self._scope = Scope(folder)
        self._cache = CacheFile(cache_file) if cache_file is not None else None
        self._raw: dict[Key, bytes] | None = None
        """Parsed data, serialized, of the files of the last two loads: what the persisted
        cache holds. Only kept with a cache file."""
        self._put: set[Key] = set()
        self._dropped: set[Key] = set()
        """What changed in `_raw` since the cache file was read or saved."""
        self._maps: dict[Key, SourceMap] = {}
        self._recent: tuple[dict[Key, FileResult], dict[Key, FileResult]] = ({}, {})
        """Results of the files the last two loads replaced, to go back to them for free."""
        self._modules = ModuleScanner()
        self._assembly = Assembly(self._modules)
        self._fresh = True
        """The assembly holds nothing yet: the next load is a full one."""
        self._loads = 0
        self._last: ListingSource | None = None
        """The source of the last load, when the next one can be compared with it."""
        self._snapshot_file = (cache_file.with_name(cache_file.stem + ".snapshot")
                               if cache_file is not None else None)
        self._base: Revision | None = None
        """The commit of the snapshot restored, until the load that starts from it."""
        self._saved: Revision | None = None
        """The commit of the last snapshot read or saved; None while there is none."""
        self._since_saved = 0
        """Files loaded again since that snapshot."""
        self._revision: Revision | None = None
        self._desired = DesiredState()
        """What the last load returned."""
        self._answered = False
        """The first load was answered from a snapshot; what it holds to start the next
        loads from is read by the next."""

    def load(self, files: FileSource, revision: Revision | None = None) -> DesiredState:
        """The desired state of what `files` holds. Never raises for anything wrong in the
        files: problems are in the result. A failure of `files` itself (an unreadable object
        database) propagates."""
        if self._raw is None:
            if revision is not None and not self._answered:
                answer = self._answer(revision)
                if answer is not None:
                    return answer
            self._raw = self._cache.read() if self._cache is not None else {}
            if revision is not None or self._answered:
                self._restore()
        restored = self._base is not None
        comparable = (self._loads > 0 or restored) and isinstance(files, ListingSource)
        if comparable:
            # The next load compares against this source: a folder on disk is read whole
            # now, so that it still tells what it held then. (Not for a loader's first load:
            # most load once, and `validate --path` need not hash the whole work tree.)
            files.stat(".")
        changes = self._changes(files, revision)
        paused = len(changes.files) >= _BULK and gc.isenabled()
        if paused:
            gc.disable()
        try:
            results, parsed = self._file_results(files, changes.files)
            desired = self._assembly.update(
                results,
                changes,
                files,
                revision=revision,
                locate=lambda problem: self._locate(files, problem),
            )
        except BaseException:
            # Halfway through, what the assembly holds matches no commit: start over.
            self._assembly = Assembly(self._modules)
            self._fresh, self._last = True, None
            raise
        finally:
            if paused:
                gc.freeze()
                gc.enable()
        self._last = files if comparable and isinstance(files, ListingSource) else None
        # After a full load or a restore, whatever the parse cache holds of other commits goes.
        self._retain(everything=self._fresh or restored)
        self._fresh = False
        self._loads += 1
        self._since_saved += len(changes.files)
        self._revision, self._desired = revision, desired
        self._modules.forget_unused()
        self.stats = LoadStats(
            files=len(self._assembly.index.files),
            parsed=parsed,
            validated=sum(1 for r in results.values() if r is not None),
        )
        return desired

    def save_cache(self) -> None:
        """Write the parsed data of the files of the last two loads to `cache_file`."""
        if self._cache is None or self._raw is None or not (self._put or self._dropped):
            return
        try:
            self._cache.save(self._raw, self._put, self._dropped)
        except OSError as err:
            # A full or read-only state dir costs the next start a parse, nothing more;
            # what is not saved is tried again at the next save.
            logger.warning("the parse cache {} was not saved: {}", self._cache.path, err)
            return
        self._put, self._dropped = set(), set()

    def _answer(self, revision: Revision) -> DesiredState | None:
        """What the snapshot in the state dir says `revision` holds, when it is of that
        commit (and of this code)."""
        if self._snapshot_file is None:
            return None
        found = snapshot.load(self._snapshot_file, self._snapshot_key(), 0)
        if (not isinstance(found, _Answer) or found.revision != revision
                or not isinstance(found.desired, DesiredState)):
            return None
        self._answered, self._loads = True, self._loads + 1
        self._revision = self._saved = revision
        self._desired = found.desired
        self.stats = LoadStats(files=found.files)
        return found.desired

    def _restore(self) -> None:
        """Start from the snapshot in the state dir, when there is one of this code."""
        if self._snapshot_file is None:
            return
        found = snapshot.load(self._snapshot_file, self._snapshot_key(), 1)
        if not isinstance(found, _Snapshot) or not isinstance(found.assembly, Assembly):
            return
        self._assembly, self._modules = found.assembly, found.modules
        self._fresh = False
        self._base = self._saved = found.revision

    def save_snapshot(self) -> None:
        """Write a snapshot of the last load, when enough changed since the last one. Saving
        10,000 entries takes a second: not to be called on the way to a plan."""
        if self._snapshot_file is None or self._revision is None or self._fresh:
            return
        files = len(self._assembly.index.files)
        if self._saved is not None and (
                self._since_saved <= max(_SNAPSHOT_AFTER, files // 20)
                or self._saved == self._revision):
            return
        # Whether it is saved or not, not tried again before as much has changed again.
        self._saved, self._since_saved = self._revision, 0
        answer = _Answer(self._revision, self._desired, self.stats.files)
        value = _Snapshot(self._revision, self._assembly, self._modules)
        try:
            snapshot.save(self._snapshot_file, self._snapshot_key(), answer, value)
        except (Exception, RecursionError) as err:  # only a cache: restarts load the slow way
            logger.warning("the declarations snapshot {} was not saved: {}",
                           self._snapshot_file, err)

    def _snapshot_key(self) -> str:
        return f"declarations\0{self.path}"

    def _changes(self, files: FileSource, revision: Revision | None) -> Changes:
        """What differs from the commit loaded before (everything, at first)."""
        known = self._assembly.index.files
        base, self._base = self._base, None
        if base is not None and base == revision:
            return Changes(paths=set())
        if base is not None:
            return full({path: result.oid for path, result in known.items()},
                        self._scope.files(files))
        if self._fresh:
            return Changes(files=dict(self._scope.files(files)), paths=None)
        if self._last is not None and isinstance(files, ListingSource):
            try:
                return compare(self._last, files, self._scope, known)
            except Exception:  # noqa: S110 the old commit may be gone (pruned): compare whole
                pass
        return full({path: result.oid for path, result in known.items()}, self._scope.files(files))

    def _file_results(
        self, files: FileSource, changed: Mapping[str, str | None]
    ) -> tuple[dict[str, FileResult | None], int]:
        """The results of the changed files (None for those removed), and how many files
        were parsed to get them."""
        assert self._raw is not None
        results: dict[str, FileResult | None] = {}
        parsed = 0
        current = self._assembly.index.files
        for path, oid in changed.items():
            old = current.get(path)
            if old is not None:
                self._recent[0][(path, old.oid)] = old
            if oid is None:
                results[path] = None
                continue
            key = (path, oid)
            found = self._recent[0].get(key) or self._recent[1].get(key)
            if found is None:
                found, fresh = self._file_result(files, path, oid)
                parsed += fresh
            results[path] = found
        return results, parsed

    def _file_result(self, files: FileSource, path: str, oid: str) -> tuple[FileResult, bool]:
        """The result of one file, from the parse cache or parsed now (then True). Whatever
        goes wrong with the file's content is in the result, never raised."""
        key = (path, oid)
        raw = self._cached(key)
        fresh = raw is None
        data = _read(files, path) if raw is None else b""
        try:
            if raw is None:
                raw = data if isinstance(data, RawFile) else parse_file(data)
                self._keep(key, raw)
            return analyse(path, oid, raw, read_text=_Text(files, path)), fresh
        except _SourceFailure as err:
            raise err.cause from None  # the source's own failure: the load's, not the file's
        except Exception as err:  # a bug shown on one file, not a failed load
            logger.opt(exception=err).error(
                "internal error reading {}: {}", path, type(err).__name__
            )
            problem = SyntaxProblem(1, 1, "internal error reading this file; see the log")
            return analyse(path, oid, RawFile(problem=problem), read_text=str), fresh

    def _keep(self, key: Key, raw: RawFile) -> None:
        """Put a fresh parse in the cache, unless it cannot be serialized: caching only
        saves time, it never fails a load."""
        if self._cache is None:
            return
        assert self._raw is not None
        try:
            blob = dump_raw(raw)
        except (Exception, RecursionError) as err:
            logger.warning("not caching the parse of {}: {}", key[0], type(err).__name__)
            return
        self._raw[key] = blob
        self._put.add(key)
        self._dropped.discard(key)

    def _cached(self, key: Key) -> RawFile | None:
        assert self._raw is not None
        blob = self._raw.get(key)
        if blob is None:
            return None
        raw = load_raw(blob)
        if raw is None:  # damaged: parse again
            self._forget(key)
        return raw

    def _locate(self, files: FileSource, problem: Pending) -> LoadError:
        key = (problem.file.path, problem.file.oid)
        if key not in self._maps:
            try:
                self._maps[key] = SourceMap(_Text(files, problem.file.path)())
            except _SourceFailure as err:
                raise err.cause from None
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

    def _retain(self, *, everything: bool) -> None:
        """Keep what the last two loads used (the daemon also loads the commit an entry was
        last applied at), drop the rest: what the load before replaced, or, after a full
        load, whatever is not current (the persisted cache may hold files of any commit)."""
        assert self._raw is not None
        current = self._assembly.index.files
        dropped: Iterable[Key] = self._recent[1]
        if everything:
            dropped = self._raw.keys() | self._maps.keys()
        for key in list(dropped):
            result = current.get(key[0])
            if result is not None and result.oid == key[1]:
                continue
            self._maps.pop(key, None)
            self._forget(key)
        self._recent = ({}, self._recent[0])

    def _forget(self, key: Key) -> None:
        assert self._raw is not None
        if self._raw.pop(key, None) is not None:
            self._put.discard(key)
            self._dropped.add(key)


def _read(files: FileSource, path: str) -> bytes | RawFile:
    """The content of a file, or why it cannot be read."""
    try:
        return files.read(path)
    except OSError as err:
        # A work tree can hold a file nobody may read, or lose one while it is read.
        problem = SyntaxProblem(1, 1, f"cannot read the file: {err.strerror or err}")
        return RawFile(problem=problem)


class _SourceFailure(Exception):
    """The file source failed while a file's problems were being located."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


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
        except Exception as err:
            raise _SourceFailure(err) from err


def load_declarations(
    files: FileSource, *, path: str = ".", revision: Revision | None = None
) -> DesiredState:
    """Load once, without keeping anything: for commands that load a single commit."""
    return DeclarationLoader(path=path).load(files, revision=revision)
