"""What `reconciler validate --format json` and `reconciler diff --format json` print: versioned
documents, like the declarations (`apiVersion` and `kind` first), so a PR bot can tell which
shape it reads. Their JSON Schemas are generated from these models into `schemas/`.

A change that renames or removes a field, or changes its meaning, comes with a new
`apiVersion`; adding a field does not.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from reconciler.declarations.bases import Frozen
from reconciler.declarations.changes import DeclarationDiff, Dependent, EntryChange
from reconciler.declarations.entries import DesiredState, LoadError
from reconciler.types import API_VERSION, EntryId, Kind, Revision, SpecHash

ApiVersion = Literal["reconciler.io/v1alpha1"]
"""The declarations' `apiVersion` (`API_VERSION`): reports are versioned with them."""


class _Report(Frozen):
    # A report always carries every field, `apiVersion` and `kind` included: its schema says
    # so, so a reader may rely on them.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ReportError(_Report):
    """One problem, `path:line:col: field: message` as fields; `path` is relative to DIR."""

    path: str
    line: int
    column: int
    field: str | None
    message: str
    entry: EntryId | None = Field(description="The entry it belongs to, when known.")

    @classmethod
    def of(cls, error: LoadError) -> ReportError:
        return cls(path=error.location.path, line=error.location.line,
                   column=error.location.column, field=error.field, message=error.message,
                   entry=error.entry)


class ReportEntry(_Report):
    """A valid entry, where it is declared and the hash a run of it is recorded under."""

    id: EntryId
    kind: Kind
    name: str
    path: str
    line: int
    spec_hash: SpecHash


class InvalidEntry(_Report):
    id: EntryId
    errors: tuple[ReportError, ...]


class ValidationReport(_Report):
    """What `reconciler validate --format json` prints: the entries of a folder and every
    problem found in it."""

    api_version: ApiVersion = Field(default="reconciler.io/v1alpha1",
                                    description=f"Always {API_VERSION}.")
    kind: Literal["ValidationReport"] = "ValidationReport"
    root: str = Field(description="The folder checked, as given on the command line.")
    valid: bool = Field(description="No problem at all: `validate` exits 0.")
    summary: dict[str, int] = Field(description=(
        "`files`, one count per kind by its plural (`tasks`, `stacks`), `invalid` (entries) "
        "and `errors`."))
    entries: tuple[ReportEntry, ...]
    invalid: tuple[InvalidEntry, ...]
    errors: tuple[ReportError, ...] = Field(description="Every problem, entries' included.")

    @classmethod
    def of(cls, desired: DesiredState, *, root: str, summary: dict[str, int]) -> ValidationReport:
        return cls(
            root=root, valid=desired.clean, summary=summary,
            entries=tuple(
                ReportEntry(id=e.id, kind=e.kind, name=e.name, path=e.location.path,
                            line=e.location.line, spec_hash=e.spec_hash)
                for e in desired.entries.values()
            ),
            invalid=tuple(
                InvalidEntry(id=ident, errors=tuple(ReportError.of(x) for x in errors))
                for ident, errors in desired.invalid.items()
            ),
            errors=tuple(ReportError.of(x) for x in desired.errors),
        )


class DiffSummary(_Report):
    added: int
    changed: int
    removed: int
    invalid: int


class DiffReport(_Report):
    """What `reconciler diff --format json` prints: what merging the head commit would change,
    entry by entry, and which unchanged entries run again after the ones that change."""

    api_version: ApiVersion = Field(default="reconciler.io/v1alpha1",
                                    description=f"Always {API_VERSION}.")
    kind: Literal["DeclarationDiff"] = "DeclarationDiff"
    base: Revision | None
    head: Revision | None
    summary: DiffSummary
    added: tuple[EntryChange, ...]
    changed: tuple[EntryChange, ...]
    removed: tuple[EntryChange, ...]
    invalid: tuple[EntryChange, ...]
    dependents: tuple[Dependent, ...] = Field(
        description="Unchanged entries that run again after a changed or new one.")
    errors: tuple[LoadError, ...] = Field(
        description="Every problem of the head commit, entries' included.")

    @classmethod
    def of(cls, diff: DeclarationDiff) -> DiffReport:
        return cls(
            base=diff.base, head=diff.head, summary=DiffSummary(**diff.counts()),
            added=diff.added, changed=diff.changed, removed=diff.removed,
            invalid=diff.invalid, dependents=diff.dependents, errors=diff.errors,
        )
