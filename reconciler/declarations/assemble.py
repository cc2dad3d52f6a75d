"""From per-file results to the desired state of a commit: cross-file checks, Defaults,
repository paths, effective specs and hashes.

Runs on every load over cached per-file results; it reads no YAML. Problems found here are
located (line and column) through the `locate` callback the loader passes in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

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
    StackDocument,
    TaskDocument,
)
from reconciler.declarations.paths import ModuleScanner, Resolution, stack_sources, task_files
from reconciler.types import EntryId, Kind, Revision, SpecHash

Locate = Callable[[Pending], LoadError]


def assemble(
    results: Sequence[FileResult],
    files: FileSource,
    *,
    revision: Revision | None,
    scanner: ModuleScanner,
    locate: Locate,
) -> DesiredState:
    declared = [(f, d) for f in results for d in f.documents]
    errors = [e for f in results for e in f.errors] + [e for _, d in declared for e in d.errors]
    invalid: dict[EntryId, list[LoadError]] = defaultdict(list)
    for _, doc in declared:
        if doc.errors and doc.id is not None:
            invalid[doc.id].extend(doc.errors)
    unreadable = sorted(f.path for f in results if f.unreadable)

    defaults, defaults_errors = _defaults(results, declared, locate, errors)
    candidates: dict[EntryId, tuple[FileResult, Document, TaskDocument | StackDocument]] = {
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
    resolved: dict[EntryId, Resolution] = {}
    for ident, (file, doc, model) in candidates.items():
        resolved[ident] = _resolve(files, model, scanner)
        pending += [Pending(file, doc, p.loc, p.message) for p in resolved[ident].problems]

    for problem in pending:
        error = locate(problem)
        errors.append(error)
        if problem.entry is not None:
            invalid[problem.entry].append(error)

    entries: dict[EntryId, Entry] = {}
    for ident, (file, doc, model) in sorted(candidates.items()):
        if ident in invalid:
            continue
        if defaults_errors:
            invalid[ident].extend(defaults_errors)
            continue
        location = Location(path=file.path, line=doc.line, column=1)
        entries[ident] = _entry(ident, location, model, defaults, resolved[ident])

    return DesiredState(
        revision=revision,
        entries=entries,
        invalid={k: tuple(_ordered(v)) for k, v in sorted(invalid.items())},
        errors=tuple(_ordered(errors)),
        files_with_errors=frozenset(unreadable),
        files=frozenset(f.path for f in results if f.declares),
    )


def _defaults(
    results: Sequence[FileResult],
    declared: Sequence[Declared],
    locate: Locate,
    errors: list[LoadError],
) -> tuple[DefaultsSpec, list[LoadError]]:
    """The repository's Defaults, and the errors that make them unknown (then no entry can
    be trusted to run as declared)."""
    found = kinds_of(declared, Kind.DEFAULTS)
    unknown: list[LoadError] = [e for _, d in found for e in d.errors]
    for problem in extra_defaults(found):
        error = locate(problem)
        errors.append(error)
        unknown.append(error)
    unknown += [e for f in results if f.raw.problem is not None and f.raw.mentions_defaults
                for e in f.errors]
    valid = [d.model for _, d in found if isinstance(d.model, DefaultsDocument)]
    if unknown or not valid:
        return DefaultsSpec(), unknown
    return valid[0].spec, []


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
