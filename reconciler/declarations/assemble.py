"""From per-file results to the desired state of a commit: cross-file checks, Defaults,
repository paths, effective specs and hashes, kept up to date file by file.

`Assembly.update` takes the files that changed since the last load. Only what they can
affect is checked again: the identities they declare (duplicates), the entries whose
`dependsOn` names one of those (missing targets), the dependency cycles the changed entries
could be part of, the repository paths of entries that read a changed path, and the entries
built from any of it. Everything else, and its located errors, is kept. A first load is an
update in which every file is new. The result is the same as assembling everything again:
the tests compare the two over random histories of commits.

Problems found here are located (line and column) through the `locate` callback the loader
passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain

from reconciler.declarations.checks import (
    Declared,
    Loop,
    Pending,
    cycles,
    duplicates,
    extra_defaults,
    missing_targets,
    reachable,
)
from reconciler.declarations.documents import FileResult
from reconciler.declarations.effective import effective_spec, spec_hash, timeout_seconds
from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.declarations.files import FileSource
from reconciler.declarations.index import Index, Touched
from reconciler.declarations.models import (
    DefaultsDocument,
    DefaultsSpec,
    StackDocument,
    TaskDocument,
)
from reconciler.declarations.paths import ModuleScanner, Recorder, Resolution, resolve_paths
from reconciler.declarations.scan import Changes
from reconciler.declarations.sharing import share_field_sets
from reconciler.types import EntryId, Kind, Revision, SpecHash

Locate = Callable[[Pending], LoadError]
EntryKey = tuple[str, str, int, tuple[str, str, int] | None, tuple[tuple[str, str], ...]]
"""What an Entry is made from: its document (path, blob id, index), the Defaults document,
and the ids of the repository paths it uses. Same key, same Entry."""
_BUILT_IN = DefaultsSpec()
_NOTHING: frozenset[str] = frozenset()
_ENTRY_FIELDS = set(Entry.model_fields)
_LOCATION_FIELDS = {"path", "line", "column"}
"""What validating these would record as set, shared (see `sharing`)."""


@dataclass(frozen=True, slots=True)
class _Defaults:
    spec: DefaultsSpec = _BUILT_IN
    key: tuple[str, str, int] | None = None
    """Where they are declared (path, blob id, document), for reusing entries."""
    errors: tuple[LoadError, ...] = ()
    """What makes them unknown: then no entry can be trusted to run as declared."""


@dataclass(frozen=True, slots=True)
class _Resolved:
    declared: Declared
    resolution: Resolution
    problems: tuple[LoadError, ...]
    watched: frozenset[str]
    """The paths the resolution looked at."""


@dataclass(slots=True)
class _Work:
    """What one update must check again."""

    idents: set[EntryId] = field(default_factory=set)
    """Entries whose errors or Entry may change."""
    files: set[str] = field(default_factory=set)
    """Files whose errors may change."""
    edges: set[EntryId] = field(default_factory=set)
    """Entries declared by another document than before (or no longer, or newly)."""
    missing: set[EntryId] = field(default_factory=set)
    resolve: set[EntryId] = field(default_factory=set)


class Assembly:
    def __init__(self, scanner: ModuleScanner) -> None:
        self._scanner = scanner
        self.index = Index()
        self._defaults = _Defaults()
        self._extra: dict[tuple[str, int], LoadError] = {}
        self._duplicates: dict[tuple[str, int], LoadError] = {}
        self._candidates: dict[EntryId, Declared] = {}
        self._referrers: dict[str, set[EntryId]] = {}
        self._missing: dict[EntryId, tuple[LoadError, ...]] = {}
        self._loops: dict[EntryId, tuple[Loop, LoadError]] = {}
        self._targets: dict[EntryId, list[str]] = {}
        self._resolved: dict[EntryId, _Resolved] = {}
        self._watchers: dict[str, set[EntryId]] = {}
        self._entries: dict[EntryId, Entry] = {}
        self._keys: dict[EntryId, EntryKey] = {}
        self._invalid: dict[EntryId, tuple[LoadError, ...]] = {}
        self._file_errors: dict[str, tuple[LoadError, ...]] = {}
        self._spare: tuple[dict[EntryKey, Entry], dict[EntryKey, Entry]] = ({}, {})
        self._state = DesiredState()
        self._changed = {"entries", "invalid", "errors", "files_with_errors", "files"}
        """The fields of the desired state to build again (all of them at first)."""
        self._unsorted = False

    def update(
        self,
        results: Mapping[str, FileResult | None],
        changes: Changes,
        files: FileSource,
        *,
        revision: Revision | None,
        locate: Locate,
    ) -> DesiredState:
        """The desired state once `results` (path → result, None for a removed file) replace
        what those files held, `files` being the commit they come from."""
        touched = self.index.update(results.items())
        work = _Work(files=set(results))
        if touched.defaults:
            self._check_defaults(locate, work)
            defaults_changed = self._new_defaults(locate)
        else:
            defaults_changed = False
        self._identities(touched, locate, work)
        if touched.unreadable:
            work.missing.update(self._missing)
        self._check_missing(work, locate)
        if work.edges:
            self._check_cycles(work, locate)
        self._check_paths(work, changes, files, locate)
        if defaults_changed:
            work.idents.update(self.index.places)
        self._settle(work.idents)
        return self._result(revision, touched, work.files)

    # Identities and Defaults

    def _identities(self, touched: Touched, locate: Locate, work: _Work) -> None:
        """Duplicates and candidates of every identity a changed file declared."""
        for before in touched.places.values():
            # All first: a document of another identity may now stand where one stood.
            for file, doc in before:
                self._duplicates.pop((file.path, doc.index), None)
        for ident, before in touched.places.items():
            after = self.index.places.get(ident, [])
            work.idents.add(ident)
            work.files.update(f.path for f, _ in chain(before, after))
            for problem in duplicates(after):
                self._duplicates[(problem.file.path, problem.document.index)] = locate(problem)
            if bool(before) != bool(after):
                work.missing.update(self._referrers.get(ident, ()))
            old, new = self._candidates.get(ident), self.index.candidate(ident)
            if old is not None and new is not None and old[1] is new[1]:
                continue
            work.edges.add(ident)
            work.missing.add(ident)
            work.resolve.add(ident)
            if old is not None:
                del self._candidates[ident]
                for target in set(self._targets.pop(ident)):
                    referrers = self._referrers[target]
                    referrers.discard(ident)
                    if not referrers:
                        del self._referrers[target]
            if new is not None:
                self._candidates[ident] = new
                targets = list(_model(new).spec.depends_on)
                self._targets[ident] = targets
                for target in targets:
                    self._referrers.setdefault(target, set()).add(ident)

    def _check_defaults(self, locate: Locate, work: _Work) -> None:
        """Every Defaults document is an error when there is more than one."""
        work.files.update(path for path, _ in self._extra)
        self._extra = {
            (p.file.path, p.document.index): locate(p) for p in extra_defaults(self.index.defaults)
        }
        work.files.update(path for path, _ in self._extra)

    def _new_defaults(self, locate: Locate) -> bool:
        """The repository's Defaults (the built-in ones when there is no Defaults document);
        whether they changed."""
        found = self.index.defaults
        unknown = [e for _, d in found for e in d.errors]
        unknown += [self._extra[at] for f, d in found if (at := (f.path, d.index)) in self._extra]
        unknown += [e for path in sorted(self.index.broken) for e in self.index.files[path].errors]
        valid = [(f, d, d.model) for f, d in found if isinstance(d.model, DefaultsDocument)]
        if unknown or not valid:
            defaults = _Defaults(errors=tuple(unknown))
        else:
            file, doc, model = valid[0]
            defaults = _Defaults(model.spec, (file.path, file.oid, doc.index))
        changed = defaults != self._defaults
        self._defaults = defaults
        return changed

    # Checks of entries

    def _check_missing(self, work: _Work, locate: Locate) -> None:
        """`dependsOn` items naming nothing, for entries whose targets or whose targets'
        existence changed (or the hint naming unreadable files did)."""
        known = self.index.places
        for ident in work.missing:
            declared = self._candidates.get(ident)
            found: tuple[LoadError, ...] = ()
            if declared is not None:
                problems = missing_targets(
                    declared, self._targets[ident], known, self.index.unreadable
                )
                found = tuple(locate(p) for p in problems)
            old = self._missing.pop(ident, ())
            if found:
                self._missing[ident] = found
            if found != old:
                work.idents.add(ident)
                work.files.update(e.location.path for e in chain(old, found))

    def _check_cycles(self, work: _Work, locate: Locate) -> None:
        """Cycles through the entries whose `dependsOn` changed. Only a component holding
        one of them, before or after, can differ; every such component lies within what they
        lead to now, or is one they were part of."""
        start = set(work.edges)
        for ident in work.edges:
            if ident in self._loops:
                start.update(self._loops[ident][0].members)
        region = reachable(self._targets, start)
        found = cycles(self._targets, region)
        for ident in region | start:
            old = self._loops.pop(ident, None)
            loop = found.get(ident)
            if loop is None:
                if old is not None:
                    work.idents.add(ident)
                    work.files.add(old[1].location.path)
                continue
            declared = self._candidates[ident]
            if old is not None and old[0] == loop and ident not in work.edges:
                self._loops[ident] = (loop, old[1])
                continue
            pending = Pending(*declared, ("spec", "dependsOn", loop.index), loop.message)
            self._loops[ident] = (loop, locate(pending))
            work.idents.add(ident)
            work.files.add(declared[0].path)
            if old is not None:
                work.files.add(old[1].location.path)

    def _check_paths(
        self, work: _Work, changes: Changes, files: FileSource, locate: Locate
    ) -> None:
        """Resolve again the paths of new declarations and of those that read a path that
        changed."""
        for path in changes.touched(self._watchers):
            work.resolve.update(self._watchers[path])
        for ident in work.resolve:
            old = self._resolved.pop(ident, None)
            if old is not None:
                self._unwatch(ident, old.watched)
            declared = self._candidates.get(ident)
            if declared is None:
                if old is not None and old.problems:
                    work.files.add(old.declared[0].path)
                continue
            file, doc = declared
            recorder = Recorder(files)
            resolution = resolve_paths(recorder, _model(declared), self._scanner)
            if old is not None and old.declared[1] is doc and old.resolution == resolution:
                problems = old.problems
            else:
                problems = tuple(
                    locate(Pending(file, doc, p.loc, p.message)) for p in resolution.problems
                )
                work.idents.add(ident)
                work.files.add(file.path)
                if old is not None:
                    work.files.add(old.declared[0].path)
            watched = frozenset(recorder.seen) if recorder.seen else _NOTHING
            self._resolved[ident] = _Resolved(declared, resolution, problems, watched)
            for path in watched:
                self._watchers.setdefault(path, set()).add(ident)

    def _unwatch(self, ident: EntryId, paths: Iterable[str]) -> None:
        for path in paths:
            watchers = self._watchers[path]
            watchers.discard(ident)
            if not watchers:
                del self._watchers[path]

    # Entries and errors

    def _settle(self, idents: Iterable[EntryId]) -> None:
        """The Entry, or the errors, of each of `idents`."""
        for ident in idents:
            errors = self._errors_of(ident)
            if errors:
                ordered = tuple(_ordered(errors))
                if self._invalid.get(ident) != ordered:
                    self._invalid[ident] = ordered
                    self._changed.add("invalid")
            elif self._invalid.pop(ident, None) is not None:
                self._changed.add("invalid")
            old = self._entries.get(ident)
            if errors or ident not in self._candidates:
                if old is not None:
                    self._spare[0][self._keys.pop(ident)] = old
                    del self._entries[ident]
                    self._changed.add("entries")
                continue
            entry, key = self._entry(ident)
            if entry is old:
                continue
            if old is not None:
                self._spare[0][self._keys[ident]] = old
            elif self._entries and ident < next(reversed(self._entries)):
                self._unsorted = True
            self._keys[ident] = key
            self._entries[ident] = entry
            self._changed.add("entries")

    def _errors_of(self, ident: EntryId) -> list[LoadError]:
        """Everything wrong with one entry, in the order the checks run."""
        places = self.index.places.get(ident, ())
        errors = [e for _, d in places for e in d.errors]
        for file, doc in places:
            duplicate = self._duplicates.get((file.path, doc.index))
            if duplicate is not None:
                errors.append(duplicate)
        if ident not in self._candidates:
            return errors
        errors += self._missing.get(ident, ())
        if ident in self._loops:
            errors.append(self._loops[ident][1])
        errors += self._resolved[ident].problems
        if not errors:
            errors += self._defaults.errors
        return errors

    def _entry(self, ident: EntryId) -> tuple[Entry, EntryKey]:
        """The Entry of a valid candidate: the one already built from the same inputs, or a
        new one."""
        file, doc = self._candidates[ident]
        resolved = self._resolved[ident]
        sources = tuple(resolved.resolution.sources.items())
        key: EntryKey = (file.path, file.oid, doc.index, self._defaults.key, sources)
        if self._keys.get(ident) == key:
            return self._entries[ident], key
        entry = self._spare[0].get(key) or self._spare[1].get(key)
        if entry is None:
            location = Location.model_construct(
                _LOCATION_FIELDS, path=file.path, line=doc.line, column=1
            )
            model = _model(self._candidates[ident])
            entry = _entry(ident, location, model, self._defaults.spec, resolved.resolution)
        return entry, key

    def _errors_in(self, path: str) -> tuple[LoadError, ...]:
        """Every error located in one file, in the order the checks run, then by position."""
        file = self.index.files.get(path)
        if file is None:
            return ()
        errors = list(file.errors)
        for doc in file.documents:
            errors += doc.errors
            at = (path, doc.index)
            for found in (self._extra.get(at), self._duplicates.get(at)):
                if found is not None:
                    errors.append(found)
            if doc.id is None or doc.id not in self._candidates:
                continue
            if self._candidates[doc.id][1] is doc:
                errors += self._missing.get(doc.id, ())
                if doc.id in self._loops:
                    errors.append(self._loops[doc.id][1])
                errors += self._resolved[doc.id].problems
        return tuple(_ordered(errors))

    def _result(
        self, revision: Revision | None, touched: Touched, paths: set[str]
    ) -> DesiredState:
        for path in paths:
            errors = self._errors_in(path)
            if errors != self._file_errors.get(path, ()):
                self._changed.add("errors")
                if errors:
                    self._file_errors[path] = errors
                else:
                    del self._file_errors[path]
        if touched.unreadable:
            self._changed.add("files_with_errors")
        if touched.declaring:
            self._changed.add("files")
        if self._unsorted:
            self._entries = dict(sorted(self._entries.items()))
            self._unsorted = False
        update: dict[str, object] = {"revision": revision}
        for name in self._changed:
            update[name] = self._field(name)
        self._changed.clear()
        # Everything here is validated already: constructing without validating 10,000
        # entries a second time. What did not change is shared with the previous state.
        self._state = DesiredState.model_construct(**{**dict(self._state), **update})
        self._spare = ({}, self._spare[0])
        return self._state

    def _field(self, name: str) -> object:
        if name == "entries":
            return dict(self._entries)
        if name == "invalid":
            return dict(sorted(self._invalid.items()))
        if name == "errors":
            ordered = sorted(self._file_errors)
            return tuple(chain.from_iterable(self._file_errors[p] for p in ordered))
        if name == "files_with_errors":
            return frozenset(self.index.unreadable)
        return self.index.declaring


def _model(declared: Declared) -> TaskDocument | StackDocument:
    model = declared[1].model
    assert isinstance(model, TaskDocument | StackDocument), declared[1].id
    return model


def _entry(
    ident: EntryId,
    location: Location,
    model: TaskDocument | StackDocument,
    defaults: DefaultsSpec,
    resolution: Resolution,
) -> Entry:
    spec = effective_spec(model.spec, defaults)
    if spec is not model.spec:
        share_field_sets(spec)
    # Every part is validated already (and frozen): constructing shares them instead of
    # validating and copying them again.
    return Entry.model_construct(
        _ENTRY_FIELDS,
        id=ident,
        kind=Kind(model.kind),
        name=model.metadata.name,
        labels=model.metadata.labels,
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
