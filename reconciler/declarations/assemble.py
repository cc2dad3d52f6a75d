"""From per-file results to the desired state of a commit: cross-file checks, Defaults,
repository paths, effective specs and hashes.

Runs on every load over cached per-file results; it reads no YAML. Problems found here are
located (line and column) through the `locate` callback the loader passes in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from reconciler.declarations.checks import (
    Declared,
    Pending,
    cycles,
    duplicates,
    extra_defaults,
    kinds_of,
    missing_targets,
)
from reconciler.declarations.documents import Document, FileResult
from reconciler.declarations.effective import effective_spec, spec_hash, timeout_seconds
from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.declarations.files import FileSource
from reconciler.declarations.models import (
    DefaultsDocument,
    DefaultsSpec,
    RepositoryFile,
    StackDocument,
    TaskDocument,
)
from reconciler.declarations.paths import ModuleScanner, Resolution, stack_sources, task_files
from reconciler.types import EntryId, Kind, Revision, SpecHash

Locate = Callable[[Pending], LoadError]
EntryKey = tuple[str, str, int, tuple[str, str, int] | None, tuple[tuple[str, str], ...]]
"""What an Entry is made from: its document (path, blob id, index), the Defaults document,
and the ids of the repository paths it uses. Same key, same Entry."""


class EntryMemo:
    """Entries built by the last two loads, so an unchanged entry is not built again: merging
    Defaults, dumping and hashing 10,000 specs takes a second."""

    def __init__(self) -> None:
        self._current: dict[EntryKey, Entry] = {}
        self._previous: dict[EntryKey, Entry] = {}
        self._used: dict[EntryKey, Entry] = {}
        self._resolved: dict[tuple[str, str, int], Resolution] = {}
        self._resolved_used: dict[tuple[str, str, int], Resolution] = {}

    def resolution(
        self, key: tuple[str, str, int], build: Callable[[], Resolution]
    ) -> Resolution:
        """The resolution of a Task that uses no repository file: it depends on its document
        alone."""
        found = self._resolved.get(key)
        if found is None:
            found = build()
        self._resolved_used[key] = found
        return found

    def get(self, key: EntryKey) -> Entry | None:
        found = self._current.get(key) or self._previous.get(key)
        if found is not None:
            self._used[key] = found
        return found

    def put(self, key: EntryKey, entry: Entry) -> None:
        self._used[key] = entry

    def next_load(self) -> None:
        self._previous, self._current, self._used = self._current, self._used, {}
        self._resolved, self._resolved_used = self._resolved_used, {}


Candidates = dict[EntryId, tuple[FileResult, Document, TaskDocument | StackDocument]]


def assemble(
    results: Sequence[FileResult],
    files: FileSource,
    *,
    revision: Revision | None,
    scanner: ModuleScanner,
    locate: Locate,
    memo: EntryMemo,
) -> DesiredState:
    declared = [(f, d) for f in results for d in f.documents]
    errors = [e for f in results for e in f.errors] + [e for _, d in declared for e in d.errors]
    invalid: dict[EntryId, list[LoadError]] = defaultdict(list)
    for _, doc in declared:
        if doc.errors and doc.id is not None:
            invalid[doc.id].extend(doc.errors)
    unreadable = sorted(f.path for f in results if f.unreadable)

    defaults = _defaults(results, declared, locate, errors)
    candidates: Candidates = {
        d.id: (f, d, d.model)
        for f, d in declared
        if d.id is not None and isinstance(d.model, TaskDocument | StackDocument)
    }
    pending = duplicates(declared)
    dependents = {
        ident: ((file, doc), model.spec.depends_on)
        for ident, (file, doc, model) in candidates.items()
    }
    known = {d.id for _, d in declared if d.id is not None}
    pending += missing_targets(dependents, known, unreadable)
    pending += cycles(dependents)
    resolved = _resolve_all(candidates, files, scanner, memo)
    for ident, (file, doc, _) in candidates.items():
        pending += [Pending(file, doc, p.loc, p.message) for p in resolved[ident].problems]
    for problem in pending:
        error = locate(problem)
        errors.append(error)
        if problem.entry is not None:
            invalid[problem.entry].append(error)

    entries = _entries(candidates, resolved, invalid, defaults, memo)

    # Everything here is validated already: constructing without validating 10,000 entries
    # a second time.
    return DesiredState.model_construct(
        revision=revision,
        entries=entries,
        invalid={k: tuple(_ordered(v)) for k, v in sorted(invalid.items())},
        errors=tuple(_ordered(errors)),
        files_with_errors=frozenset(unreadable),
        files=frozenset(f.path for f in results if f.declares),
    )


def _entries(
    candidates: Candidates,
    resolved: dict[EntryId, Resolution],
    invalid: dict[EntryId, list[LoadError]],
    defaults: _Defaults,
    memo: EntryMemo,
) -> dict[EntryId, Entry]:
    """Entries of the valid candidates, reusing those built from the same inputs before.
    With unknown Defaults every candidate is invalid instead."""
    entries: dict[EntryId, Entry] = {}
    for ident in sorted(candidates):
        if ident in invalid:
            continue
        if defaults.errors:
            invalid[ident].extend(defaults.errors)
            continue
        file, doc, model = candidates[ident]
        sources = tuple(resolved[ident].sources.items())
        key: EntryKey = (file.path, file.oid, doc.index, defaults.key, sources)
        entry = memo.get(key)
        if entry is None:
            location = Location(path=file.path, line=doc.line, column=1)
            entry = _entry(ident, location, model, defaults.spec, resolved[ident])
            memo.put(key, entry)
        entries[ident] = entry
    memo.next_load()
    return entries


def _resolve_all(
    candidates: Candidates, files: FileSource, scanner: ModuleScanner, memo: EntryMemo
) -> dict[EntryId, Resolution]:
    resolved: dict[EntryId, Resolution] = {}
    for ident, (file, doc, model) in candidates.items():
        if _self_contained(model):
            key = (file.path, file.oid, doc.index)
            resolved[ident] = memo.resolution(key, partial(_resolve, files, model, scanner))
        else:
            resolved[ident] = _resolve(files, model, scanner)
    return resolved


@dataclass(frozen=True, slots=True)
class _Defaults:
    spec: DefaultsSpec
    key: tuple[str, str, int] | None
    """Where they are declared (path, blob id, document), for reusing entries."""
    errors: list[LoadError]
    """What makes them unknown: then no entry can be trusted to run as declared."""


def _defaults(
    results: Sequence[FileResult],
    declared: Sequence[Declared],
    locate: Locate,
    errors: list[LoadError],
) -> _Defaults:
    """The repository's Defaults (the built-in ones when there is no Defaults document)."""
    found = kinds_of(declared, Kind.DEFAULTS)
    unknown: list[LoadError] = [e for _, d in found for e in d.errors]
    for problem in extra_defaults(found):
        error = locate(problem)
        errors.append(error)
        unknown.append(error)
    unknown += [e for f in results if f.may_hold_defaults for e in f.errors]
    valid = [(f, d, d.model) for f, d in found if isinstance(d.model, DefaultsDocument)]
    if unknown or not valid:
        return _Defaults(DefaultsSpec(), None, unknown)
    file, doc, model = valid[0]
    return _Defaults(model.spec, (file.path, file.oid, doc.index), [])


def _self_contained(model: TaskDocument | StackDocument) -> bool:
    """A Task whose files are all inline: nothing outside its document to look up."""
    return isinstance(model, TaskDocument) and not any(
        isinstance(value, RepositoryFile) for value in model.spec.files.values()
    )


def _resolve(
    files: FileSource, model: TaskDocument | StackDocument, scanner: ModuleScanner
) -> Resolution:
    if isinstance(model, StackDocument):
        return stack_sources(files, model.spec, scanner)
    return task_files(files, model.spec)


def _entry(
    ident: EntryId,
    location: Location,
    model: TaskDocument | StackDocument,
    defaults: DefaultsSpec,
    resolution: Resolution,
) -> Entry:
    spec = effective_spec(model.spec, defaults)
    return Entry(
        id=ident,
        kind=Kind(model.kind),
        name=model.metadata.name,
        labels=dict(model.metadata.labels),
        spec=spec,
        defaults=defaults,
        spec_hash=SpecHash(spec_hash(spec, defaults, resolution.sources)),
        location=location,
        timeout_seconds=timeout_seconds(spec),
        files=resolution.files,
        sources=resolution.sources,
    )


def _ordered(errors: list[LoadError]) -> list[LoadError]:
    unique = list(dict.fromkeys(errors))
    return sorted(unique, key=lambda e: (e.location.path, e.location.line, e.location.column))
