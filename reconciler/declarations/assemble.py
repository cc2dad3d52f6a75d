"""From per-file results to the desired state of a commit: cross-file checks, Defaults,
repository paths, effective specs and hashes, kept up to date file by file.

`Assembly.update` takes the files that changed since the last load; the cross-file checks
(`crosscheck`) say which entries and files that can affect, and only those entries are built
again and only those files' errors gathered again. Everything else is kept, and shared with
the desired state of the previous load. A first load is an update in which every file is
new. The result is the same as assembling everything again: the tests compare the two over
random histories of commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import chain
from typing import cast

from loguru import logger

from reconciler.declarations.bases import PLAN_REQUESTED, RUN_REQUESTED, EntryDocument
from reconciler.declarations.crosscheck import CrossCheck, Locate, model_of, ordered
from reconciler.declarations.documents import FileResult
from reconciler.declarations.effective import effective_spec, spec_hash, timeout_seconds
from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.declarations.files import FileSource
from reconciler.declarations.index import Index
from reconciler.declarations.models import DefaultsSpec, Spec
from reconciler.declarations.paths import ModuleScanner, Resolution
from reconciler.declarations.scan import Changes
from reconciler.declarations.sharing import share_field_sets
from reconciler.types import EntryId, Kind, Revision, SpecHash

EntryKey = tuple[str, str, int, tuple[str, str, int] | None, tuple[tuple[str, str], ...]]
"""What an Entry is made from: its document (path, blob id, index), the Defaults document,
and the ids of the repository paths it uses. Same key, same Entry."""
_ENTRY_FIELDS = set(Entry.model_fields)
_LOCATION_FIELDS = {"path", "line", "column"}
"""What validating these would record as set, shared (see `sharing`)."""


class Assembly:
    def __init__(self, scanner: ModuleScanner) -> None:
        self._checks = CrossCheck(scanner)
        self._entries: dict[EntryId, Entry] = {}
        self._keys: dict[EntryId, EntryKey] = {}
        self._invalid: dict[EntryId, tuple[LoadError, ...]] = {}
        self._file_errors: dict[str, tuple[LoadError, ...]] = {}
        self._spare: tuple[dict[EntryKey, Entry], dict[EntryKey, Entry]] = ({}, {})
        """Entries replaced by this load and the one before, to go back to them for free."""
        self._state = DesiredState()
        self._changed = {"entries", "invalid", "errors", "files_with_errors", "files"}
        """The fields of the desired state to build again (all of them at first)."""
        self._unsorted = False
        self._broken: dict[EntryId, LoadError] = {}
        """Entries whose building raised, with the error standing for them."""

    @property
    def index(self) -> Index:
        return self._checks.index

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
        work = self._checks.update(results, changes, files, locate)
        self._settle(work.idents)
        for path in work.files:
            self._file(path)
        if work.touched.unreadable:
            self._changed.add("files_with_errors")
        if work.touched.declaring:
            self._changed.add("files")
        return self._result(revision)

    # Entries and errors

    def _settle(self, idents: Iterable[EntryId]) -> None:
        """The Entry, or the errors, of each of `idents`."""
        for ident in idents:
            errors = self._checks.errors_of(ident)
            if errors:
                found = tuple(ordered(errors))
                if self._invalid.get(ident) != found:
                    self._invalid[ident] = found
                    self._changed.add("invalid")
            elif self._invalid.pop(ident, None) is not None:
                self._changed.add("invalid")
            old = self._entries.get(ident)
            if errors or ident not in self._checks.candidates:
                self._mended(ident)
                if old is not None:
                    self._spare[0][self._keys.pop(ident)] = old
                    del self._entries[ident]
                    self._changed.add("entries")
                continue
            try:
                entry, key = self._entry(ident)
            except Exception as err:  # a bug shown on one entry, not a failed load
                self._failed(ident, err)
                continue
            self._mended(ident)
            if entry is old:
                continue
            if old is not None:
                self._spare[0][self._keys[ident]] = old
            elif self._entries and ident < next(reversed(self._entries)):
                self._unsorted = True
            self._keys[ident] = key
            self._entries[ident] = entry
            self._changed.add("entries")

    def _mended(self, ident: EntryId) -> None:
        """Forget that an entry could not be built (it is built, or invalid, now)."""
        error = self._broken.pop(ident, None)
        if error is not None:
            self._file(error.location.path)

    def _failed(self, ident: EntryId, err: Exception) -> None:
        """An entry that could not be built: invalid, with an error at its declaration."""
        file, doc = self._checks.candidates[ident]
        logger.opt(exception=err).error(
            "internal error building {} ({}): {}", ident, file.path, type(err).__name__
        )
        error = LoadError(
            location=Location(path=file.path, line=doc.line),
            message="internal error building this entry; see the log",
            entry=ident,
        )
        self._broken[ident] = error
        self._invalid[ident] = (error,)
        self._changed.add("invalid")
        old = self._entries.pop(ident, None)
        if old is not None:
            self._spare[0][self._keys.pop(ident)] = old
            self._changed.add("entries")
        self._file(file.path)

    def _entry(self, ident: EntryId) -> tuple[Entry, EntryKey]:
        """The Entry of a valid candidate: the one already built from the same inputs, or a
        new one."""
        declared = self._checks.candidates[ident]
        file, doc = declared
        defaults = self._checks.defaults
        resolution = self._checks.resolution(ident)
        sources = tuple(resolution.sources.items())
        key: EntryKey = (file.path, file.oid, doc.index, defaults.key, sources)
        if self._keys.get(ident) == key:
            return self._entries[ident], key
        entry = self._spare[0].get(key) or self._spare[1].get(key)
        if entry is None:
            location = Location.model_construct(
                _LOCATION_FIELDS, path=file.path, line=doc.line, column=1
            )
            entry = _entry(ident, location, model_of(declared), defaults.spec, resolution)
        return entry, key

    def _file(self, path: str) -> None:
        errors = self._checks.errors_in(path)
        broken = [e for e in self._broken.values() if e.location.path == path]
        if broken:
            errors = tuple(ordered([*errors, *broken]))
        if errors != self._file_errors.get(path, ()):
            self._changed.add("errors")
            if errors:
                self._file_errors[path] = errors
            else:
                del self._file_errors[path]

    def _result(self, revision: Revision | None) -> DesiredState:
        if self._unsorted:
            self._entries = dict(sorted(self._entries.items()))
            self._unsorted = False
        update: dict[str, object] = {"revision": revision,
                                     "defaults_location": self._defaults_location()}
        for name in self._changed:
            update[name] = self._field(name)
        self._changed.clear()
        # Everything here is validated already: constructing without validating 10,000
        # entries a second time. What did not change is shared with the previous state.
        self._state = DesiredState.model_construct(**{**dict(self._state), **update})
        self._spare = ({}, self._spare[0])
        return self._state

    def _defaults_location(self) -> Location | None:
        if self._checks.defaults.key is None:
            return None
        path, _, index = self._checks.defaults.key
        file = self.index.files.get(path)
        lines = [d.line for d in file.documents if d.index == index] if file else []
        return Location(path=path, line=lines[0] if lines else 1)

    def _field(self, name: str) -> object:
        if name == "entries":
            return dict(self._entries)
        if name == "invalid":
            return dict(sorted(self._invalid.items()))
        if name == "errors":
            paths = sorted(self._file_errors)
            return tuple(chain.from_iterable(self._file_errors[p] for p in paths))
        if name == "files_with_errors":
            return frozenset(self.index.unreadable)
        return self.index.declaring


def _entry(
    ident: EntryId,
    location: Location,
    model: EntryDocument,
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
        # The document of a kind in ENTRY_DOCUMENTS holds one of `Spec` (tests keep the two
        # equal); the union is what the layers above match on.
        spec=cast(Spec, spec),
        defaults=defaults,
        spec_hash=SpecHash(spec_hash(spec, defaults, resolution.sources)),
        location=location,
        timeout_seconds=timeout_seconds(spec),
        files=resolution.files,
        sources=resolution.sources,
        run_requested=model.metadata.annotations.get(RUN_REQUESTED),
        plan_requested=model.metadata.annotations.get(PLAN_REQUESTED),
    )

