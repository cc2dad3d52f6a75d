"""What merging a change would do to the declarations: the difference between the desired
states of two commits, entry by entry, with a field-level diff of the effective specs.

Pure: it compares two `DesiredState`s (and, if given, the list of files that changed
between the commits, to show which module files changed under a Stack).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import Field

from reconciler.declarations.bases import Frozen
from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.declarations.models import ENTRY_DOCUMENTS
from reconciler.declarations.positions import Segment, field_path
from reconciler.types import EntryId, Kind, Revision, SpecHash, split_entry_id

Change = Literal["added", "changed", "removed", "invalid"]


class FieldChange(Frozen):
    """One value that differs. `base`/`head` are JSON values; None where the field is
    absent on that side."""

    path: str
    base: Any = None
    head: Any = None


class EntryChange(Frozen):
    id: EntryId
    kind: Kind
    name: str
    change: Change
    location: Location | None = Field(
        default=None, description="Head declaration (base for removed entries)."
    )
    base_hash: SpecHash | None = None
    head_hash: SpecHash | None = None
    rerun: bool = Field(
        default=False, description="Whether merging starts a run (the spec hash changes)."
    )
    fields: tuple[FieldChange, ...] = ()
    changed_files: tuple[str, ...] = Field(
        default=(), description="Repository files used by the entry that changed."
    )
    prune: bool = Field(
        default=False, description="A removed Stack whose resources merging destroys."
    )
    errors: tuple[LoadError, ...] = ()
    note: str = ""


class Dependent(Frozen):
    """An entry that did not change but runs again once merged: its `dependsOn` names, directly
    or through other dependents, an entry that runs again (the daemon runs it after them)."""

    id: EntryId
    kind: Kind
    name: str
    location: Location | None = None
    after: tuple[EntryId, ...] = Field(
        default=(), description="The entries of its `dependsOn` that run again."
    )


class DeclarationDiff(Frozen):
    base: Revision | None
    head: Revision | None
    added: tuple[EntryChange, ...] = ()
    changed: tuple[EntryChange, ...] = ()
    removed: tuple[EntryChange, ...] = ()
    invalid: tuple[EntryChange, ...] = ()
    dependents: tuple[Dependent, ...] = Field(
        default=(), description="Unchanged entries that run again after a changed or new one."
    )
    errors: tuple[LoadError, ...] = Field(
        default=(), description="Every problem of the head commit, entries' included."
    )

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed or self.invalid or self.errors)

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "removed": len(self.removed),
            "invalid": len(self.invalid),
        }


def compare(
    base: DesiredState, head: DesiredState, *, changed_files: Sequence[str] = ()
) -> DeclarationDiff:
    added = [_added(e, i in base.invalid) for i, e in head.entries.items() if i not in base.entries]
    changed = [
        c
        for i, e in head.entries.items()
        if i in base.entries and (c := _changed(base.entries[i], e, changed_files)) is not None
    ]
    removed: list[EntryChange] = []
    invalid = [_invalid(i, errors) for i, errors in head.invalid.items()]
    for ident in sorted(_known(base) - _known(head)):
        old = base.entries.get(ident)
        path = old.location.path if old is not None else _path_of(base, ident)
        if path is not None and path in head.files_with_errors:
            note = f"{path} failed to load: the entry is kept as it was, not removed"
            invalid.append(_unknown(ident, old, note, head))
        else:
            removed.append(_removed(ident, old, head))
    return DeclarationDiff(
        base=base.revision,
        head=head.revision,
        added=tuple(added),
        changed=tuple(changed),
        removed=tuple(removed),
        invalid=tuple(sorted(invalid, key=lambda c: c.id)),
        dependents=dependents(head, {c.id for c in [*added, *changed] if c.rerun}),
        errors=head.errors,
    )


def dependents(head: DesiredState, rerun: set[EntryId]) -> tuple[Dependent, ...]:
    """The valid entries of `head` outside `rerun` that depend on it, transitively, each
    with the entries of its `dependsOn` that run again. A dependency cycle is a load error,
    but the walk visits each entry once regardless."""
    users: dict[EntryId, list[Entry]] = {}
    for entry in head.entries.values():
        for dep in entry.depends_on:
            users.setdefault(dep, []).append(entry)
    after: dict[EntryId, set[EntryId]] = {}
    queue = deque(sorted(rerun))
    while queue:
        ident = queue.popleft()
        for user in users.get(ident, ()):
            if user.id in rerun:
                continue
            if user.id not in after:
                queue.append(user.id)
            after.setdefault(user.id, set()).add(ident)
    return tuple(
        Dependent(id=e.id, kind=e.kind, name=e.name, location=e.location,
                  after=tuple(sorted(after[e.id])))
        for e in sorted((head.entries[i] for i in after), key=lambda e: e.id)
    )


def _known(state: DesiredState) -> set[EntryId]:
    return set(state.entries) | set(state.invalid)


def _path_of(state: DesiredState, ident: EntryId) -> str | None:
    errors = state.invalid.get(ident, ())
    return errors[0].location.path if errors else None


def _identity(ident: EntryId) -> tuple[Kind, str]:
    return split_entry_id(ident)


def _added(entry: Entry, was_invalid: bool) -> EntryChange:
    return EntryChange(
        id=entry.id, kind=entry.kind, name=entry.name, change="added",
        location=entry.location, head_hash=entry.spec_hash, rerun=True,
        note="fixed: it was invalid in the base commit" if was_invalid else "",
    )


def _changed(old: Entry, new: Entry, changed_files: Sequence[str]) -> EntryChange | None:
    asks = _requests(old, new)
    # A control field (suspend, windows, approvedPlan) changes the spec, not its hash.
    if (old.spec_hash == new.spec_hash and old.labels == new.labels and old.spec == new.spec
            and not asks):
        return None
    fields = tuple(_differences(view(old), view(new), ()))
    touched = tuple(
        f for f in changed_files
        if any(f == s or f.startswith(s.rstrip("/") + "/") or s == "." for s in new.sources)
    )
    return EntryChange(
        id=new.id, kind=new.kind, name=new.name, change="changed", location=new.location,
        base_hash=old.spec_hash, head_hash=new.spec_hash,
        rerun=old.spec_hash != new.spec_hash, fields=fields, changed_files=touched,
        note="; ".join(asks),
    )


def _requests(old: Entry, new: Entry) -> list[str]:
    """What a changed request annotation asks the daemon (DESIGN §9)."""
    asks = []
    if new.run_requested is not None and new.run_requested != old.run_requested:
        asks.append("run requested: it runs once more at its version")
    if new.plan_requested is not None and new.plan_requested != old.plan_requested:
        asks.append("plan requested: it is planned once more")
    return asks


def _removed(ident: EntryId, old: Entry | None, head: DesiredState) -> EntryChange:
    kind, name = _identity(ident)
    prune, note = _on_removal(kind, old, clean=head.clean)
    return EntryChange(
        id=ident, kind=kind, name=name, change="removed",
        location=old.location if old is not None else None,
        base_hash=old.spec_hash if old is not None else None, prune=prune, note=note,
    )


def _on_removal(kind: Kind, old: Entry | None, *, clean: bool) -> tuple[bool, str]:
    """Whether merging destroys what the removed entry made, and the note that says so: the
    kind's spec says, from the entry's last valid spec when the base commit had one."""
    spec_model = ENTRY_DOCUMENTS[kind].spec_model()
    return spec_model.on_removal(old.spec if old is not None else None, clean=clean)


def _invalid(ident: EntryId, errors: tuple[LoadError, ...]) -> EntryChange:
    kind, name = _identity(ident)
    location = errors[0].location if errors else None
    return EntryChange(
        id=ident, kind=kind, name=name, change="invalid", location=location, errors=errors,
        note="not run until fixed; nothing is removed because of it",
    )


def _unknown(ident: EntryId, old: Entry | None, note: str, head: DesiredState) -> EntryChange:
    kind, name = _identity(ident)
    path = old.location.path if old is not None else None
    errors = tuple(e for e in head.errors if e.location.path == path)
    return EntryChange(
        id=ident, kind=kind, name=name, change="invalid",
        location=old.location if old is not None else None, errors=errors, note=note,
    )


def view(entry: Entry) -> dict[str, Any]:
    """What is compared: the effective spec with every field (defaults included, so a
    change to a default value reads `3 → 0` rather than `3 → absent`), labels, and what
    Defaults contribute outside the spec."""
    shown: dict[str, Any] = {
        "metadata": {"labels": dict(entry.labels)},
        "spec": entry.spec.model_dump(mode="json", by_alias=True),
        "namespace": entry.defaults.namespace,
        "imagePullSecrets": list(entry.defaults.image_pull_secrets),
        "sources": dict(entry.sources),
    }
    # A spec that names its own image has it in `spec`; one that runs an engine runs in
    # the runner image Defaults set for it.
    engine = entry.spec.engine_to_run()
    if engine is not None:
        shown["runnerImage"] = (getattr(entry.defaults.runner_images, engine)
                                or "(the daemon's --runner-image)")
    return shown


def _differences(
    base: Any, head: Any, at: tuple[Segment, ...]
) -> Iterator[FieldChange]:
    if isinstance(base, dict) and head is None:
        head = {}
    elif isinstance(head, dict) and base is None:
        base = {}
    if isinstance(base, dict) and isinstance(head, dict):
        for key in sorted(base.keys() | head.keys(), key=str):
            yield from _differences(base.get(key), head.get(key), (*at, str(key)))
    elif isinstance(base, list) and isinstance(head, list) and len(base) == len(head):
        for index, (a, b) in enumerate(zip(base, head, strict=True)):
            yield from _differences(a, b, (*at, index))
    elif base != head:
        yield FieldChange(path=field_path(at), base=base, head=head)
