"""The cross-file checks of the declarations of a commit, kept up to date file by file.

`CrossCheck.update` takes the files that changed since the last load. Only what they can
affect is checked again: the identities they declare (duplicates), the entries whose
`dependsOn` names one of those (missing targets), the dependency cycles the changed entries
could be part of, and the repository paths of entries that read a changed path. Everything
else, and its located errors, is kept. A first load is an update in which every file is
new.

Problems are located (line and column) through the `locate` callback the loader passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain

from reconciler.declarations.bases import EntryDocument
from reconciler.declarations.checks import (
    Declared,
    Loop,
    Pending,
    cycles,
    duplicates,
    extra_defaults,
    missing_targets,
    reachable,
    where,
)
from reconciler.declarations.documents import FileResult
from reconciler.declarations.entries import LoadError
from reconciler.declarations.files import FileSource
from reconciler.declarations.index import Index, Touched
from reconciler.declarations.limits import MAX_ERRORS_PER_FILE
from reconciler.declarations.models import DefaultsDocument, DefaultsSpec
from reconciler.declarations.paths import ModuleScanner, Recorder, Resolution
from reconciler.declarations.scan import Changes
from reconciler.types import EntryId

Locate = Callable[[Pending], LoadError]
_NOTHING: frozenset[str] = frozenset()
_BUILT_IN = DefaultsSpec()


@dataclass(frozen=True, slots=True)
class Defaults:
    """The repository's Defaults."""

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
class Work:
    """What one update must check again, and what changed."""

    idents: set[EntryId] = field(default_factory=set)
    """Entries whose errors or Entry may have changed."""
    files: set[str] = field(default_factory=set)
    """Files whose errors may have changed."""
    edges: set[EntryId] = field(default_factory=set)
    """Entries declared by another document than before (or no longer, or newly)."""
    missing: set[EntryId] = field(default_factory=set)
    resolve: set[EntryId] = field(default_factory=set)
    defaults: bool = False
    """The Defaults changed: every entry is built again."""
    touched: Touched = field(default_factory=Touched)


class CrossCheck:
    def __init__(self, scanner: ModuleScanner) -> None:
        self._scanner = scanner
        self.index = Index()
        self.defaults = Defaults()
        self.candidates: dict[EntryId, Declared] = {}
        """What each valid entry is declared by."""
        self._extra: dict[tuple[str, int], LoadError] = {}
        self._duplicates: dict[tuple[str, int], LoadError] = {}
        self._referrers: dict[str, set[EntryId]] = {}
        self._missing: dict[EntryId, tuple[LoadError, ...]] = {}
        self._loops: dict[EntryId, tuple[Loop, LoadError]] = {}
        self._targets: dict[EntryId, list[str]] = {}
        self._resolved: dict[EntryId, _Resolved] = {}
        self._watchers: dict[str, set[EntryId]] = {}

    def update(
        self,
        results: Mapping[str, FileResult | None],
        changes: Changes,
        files: FileSource,
        locate: Locate,
    ) -> Work:
        """Check again what `results` (path → result, None for a removed file) can affect,
        `files` being the commit they come from."""
        touched = self.index.update(results.items())
        work = Work(files=set(results), touched=touched)
        if touched.defaults:
            self._check_defaults(locate, work)
            work.defaults = self._new_defaults()
        self._identities(touched, locate, work)
        if touched.unreadable:
            work.missing.update(self._missing)
        self._check_missing(work, locate)
        if work.edges:
            self._check_cycles(work, locate)
        self._check_paths(work, changes, files, locate)
        if work.defaults:
            work.idents.update(self.index.places)
        return work

    def resolution(self, ident: EntryId) -> Resolution:
        return self._resolved[ident].resolution

    def _identities(self, touched: Touched, locate: Locate, work: Work) -> None:
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
            old, new = self.candidates.get(ident), self.index.candidate(ident)
            if old is not None and new is not None and old[1] is new[1]:
                continue
            work.edges.add(ident)
            work.missing.add(ident)
            work.resolve.add(ident)
            if old is not None:
                del self.candidates[ident]
                for target in set(self._targets.pop(ident)):
                    referrers = self._referrers[target]
                    referrers.discard(ident)
                    if not referrers:
                        del self._referrers[target]
            if new is not None:
                self.candidates[ident] = new
                targets = list(model_of(new).spec.depends_on)
                self._targets[ident] = targets
                for target in targets:
                    self._referrers.setdefault(target, set()).add(ident)

    def _check_defaults(self, locate: Locate, work: Work) -> None:
        """Every Defaults document is an error when there is more than one."""
        work.files.update(path for path, _ in self._extra)
        self._extra = {
            (p.file.path, p.document.index): locate(p) for p in extra_defaults(self.index.defaults)
        }
        work.files.update(path for path, _ in self._extra)

    def _new_defaults(self) -> bool:
        """The repository's Defaults (the built-in ones when there is no Defaults document);
        whether they changed."""
        found = self.index.defaults
        unknown = [e for _, d in found for e in d.errors]
        unknown += [self._extra[at] for f, d in found if (at := (f.path, d.index)) in self._extra]
        unknown += [e for path in sorted(self.index.broken) for e in self.index.files[path].errors]
        valid = [(f, d, d.model) for f, d in found if isinstance(d.model, DefaultsDocument)]
        if unknown or not valid:
            defaults = Defaults(errors=tuple(unknown))
        else:
            file, doc, model = valid[0]
            defaults = Defaults(model.spec, (file.path, file.oid, doc.index))
        changed = defaults != self.defaults
        self.defaults = defaults
        return changed

    def _check_missing(self, work: Work, locate: Locate) -> None:
        """`dependsOn` items naming nothing, for entries whose targets or whose targets'
        existence changed (or the hint naming unreadable files did)."""
        known = self.index.places
        for ident in work.missing:
            declared = self.candidates.get(ident)
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

    def _check_cycles(self, work: Work, locate: Locate) -> None:
        """Cycles through the entries whose `dependsOn` changed. Only a component holding
        one of them, before or after, can differ; every such component lies within what they
        lead to now, or is one they were part of."""
        start = set(work.edges)
        for ident in work.edges:
            if ident in self._loops:
                start.update(self._loops[ident][0].members)
        region = reachable(self._targets, start)
        found = cycles(self._targets, region, lambda ident: where(*self.candidates[ident]))
        for ident in region | start:
            old = self._loops.pop(ident, None)
            loop = found.get(ident)
            if loop is None:
                if old is not None:
                    work.idents.add(ident)
                    work.files.add(old[1].location.path)
                continue
            declared = self.candidates[ident]
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
        self, work: Work, changes: Changes, files: FileSource, locate: Locate
    ) -> None:
        """Resolve again the paths of new declarations and of those that read a path that
        changed."""
        for path in changes.touched(self._watchers):
            work.resolve.update(self._watchers[path])
        for ident in work.resolve:
            old = self._resolved.pop(ident, None)
            if old is not None:
                self._unwatch(ident, old.watched)
            declared = self.candidates.get(ident)
            if declared is None:
                if old is not None and old.problems:
                    work.files.add(old.declared[0].path)
                continue
            file, doc = declared
            recorder = Recorder(files)
            resolution = model_of(declared).spec.resolve_sources(recorder, self._scanner)
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

    def errors_of(self, ident: EntryId) -> list[LoadError]:
        """Everything wrong with one entry, in the order the checks run."""
        places = self.index.places.get(ident, ())
        errors = [e for _, d in places for e in d.errors]
        for file, doc in places:
            duplicate = self._duplicates.get((file.path, doc.index))
            if duplicate is not None:
                errors.append(duplicate)
        if ident not in self.candidates:
            return errors
        errors += self._missing.get(ident, ())
        if ident in self._loops:
            errors.append(self._loops[ident][1])
        errors += self._resolved[ident].problems
        if not errors:
            errors += self.defaults.errors
        return errors

    def errors_in(self, path: str) -> tuple[LoadError, ...]:
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
            if doc.id is None or doc.id not in self.candidates:
                continue
            if self.candidates[doc.id][1] is doc:
                errors += self._missing.get(doc.id, ())
                if doc.id in self._loops:
                    errors.append(self._loops[doc.id][1])
                errors += self._resolved[doc.id].problems
        omitted = sum(doc.omitted for doc in file.documents)
        return capped(ordered(errors), omitted)


def capped(errors: list[LoadError], omitted: int = 0) -> tuple[LoadError, ...]:
    """At most MAX_ERRORS_PER_FILE of one file's errors, then one saying how many more
    there are (`omitted` of them never located), placed at the first of those not shown
    (at the last one shown when they were never located)."""
    if len(errors) <= MAX_ERRORS_PER_FILE and not omitted:
        return tuple(errors)
    shown = errors[:MAX_ERRORS_PER_FILE]
    more = len(errors) - len(shown) + omitted
    at = errors[len(shown)] if len(errors) > len(shown) else errors[-1]
    summary = LoadError(
        location=at.location, message=f"… and {more} more error{'s' * (more != 1)} in this file"
    )
    return (*shown, summary)


def model_of(declared: Declared) -> EntryDocument:
    """The model of a valid entry declaration."""
    model = declared[1].model
    assert isinstance(model, EntryDocument), declared[1].id
    return model


def ordered(errors: list[LoadError]) -> list[LoadError]:
    """Without repetitions, by position (the order found where positions are equal)."""
    unique = list(dict.fromkeys(errors))
    return sorted(unique, key=lambda e: (e.location.path, e.location.line, e.location.column))
