"""What the loader produces: effective entries, load errors, and the desired state of a commit."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from reconciler.declarations.models import DefaultsSpec, Spec, StackSpec, TaskSpec
from reconciler.types import EntryId, Kind, Revision, SpecHash


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Location(_Value):
    """Where something stands in the repository; line and column are 1-based."""

    path: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class LoadError(_Value):
    """One problem with the user's files, reported as `path:line:col: field: message`."""

    location: Location
    field: str | None = None
    message: str
    entry: EntryId | None = Field(
        default=None, description="The entry this error belongs to, when its identity is known."
    )

    def __str__(self) -> str:
        field = f"{self.field}: " if self.field else ""
        return _one_line(f"{self.location}: {field}{self.message}")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(text: str) -> str:
    """`text` with control characters escaped: what users wrote (a key with a newline or an
    escape sequence in it) can neither break the one-line-per-problem output nor drive a
    terminal."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Entry(_Value):
    """One valid Task or Stack with Defaults applied: what plan and the executors work from."""

    id: EntryId
    kind: Kind
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    spec: Spec
    defaults: DefaultsSpec = Field(
        default_factory=DefaultsSpec,
        description="The repository's Defaults, for what is not part of a spec (namespace, "
        "runner images, pull secrets).",
    )
    spec_hash: SpecHash
    location: Location
    timeout_seconds: int = Field(description="Effective timeout (spec, Defaults, or 1h).")
    files: dict[str, str] = Field(
        default_factory=dict,
        description="A Task's files with their content resolved (inline, or read from the "
        "repository at this commit): what executors write under /task. Empty for stacks.",
    )
    sources: dict[str, str] = Field(
        default_factory=dict,
        description="Repository paths the entry uses besides its declaration, with their Git "
        "ids: a Stack's folder (tree), local modules it calls outside that folder, var files "
        "reached through symlinks; the repository files a Task copies (blobs). Hashed with "
        "the spec, so a change to any of them is a change of the entry.",
    )

    run_requested: str | None = Field(
        default=None, description="Its `reconciler.io/run-requested` annotation.")
    plan_requested: str | None = Field(
        default=None, description="Its `reconciler.io/plan-requested` annotation.")

    @property
    def task(self) -> TaskSpec:
        assert isinstance(self.spec, TaskSpec), self.id
        return self.spec

    @property
    def stack(self) -> StackSpec:
        assert isinstance(self.spec, StackSpec), self.id
        return self.spec

    @property
    def depends_on(self) -> tuple[EntryId, ...]:
        return tuple(EntryId(d) for d in self.spec.depends_on)


class DesiredState(_Value):
    """Everything one commit declares, and everything wrong with it.

    An entry whose document failed validation but whose kind and name could be read is listed
    in `invalid`, so that plan marks it Invalid instead of treating it as removed. Files that
    could not be read at all, or hold a document whose kind or name could not be read, are in
    `files_with_errors`: entries last seen in them are not removed either. When the
    repository's Defaults are wrong (invalid, more than one, or in a file that does not
    parse), every Task and Stack is in `invalid`: running them without their Defaults would
    run something nobody declared.
    """

    revision: Revision | None = None
    entries: dict[EntryId, Entry] = Field(default_factory=dict)
    invalid: dict[EntryId, tuple[LoadError, ...]] = Field(default_factory=dict)
    errors: tuple[LoadError, ...] = ()
    files_with_errors: frozenset[str] = frozenset()
    files: frozenset[str] = Field(
        default=frozenset(), description="Every declaration file that was read."
    )
    defaults_location: Location | None = Field(
        default=None, description="Where the Defaults in force are declared, if anywhere."
    )

    @property
    def clean(self) -> bool:
        """True when the commit loaded without a single error (prune is allowed only then)."""
        return not self.errors
