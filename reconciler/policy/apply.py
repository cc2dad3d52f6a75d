"""The policy applied to a loaded desired state: denied entries become Invalid.

Each denial becomes a located `LoadError` (`path:line:col: field: denied by policy: ...`),
pointing at the field in the entry's document, or in the Defaults document when the value
comes from there. The entry moves from `entries` to `invalid`: never run, and, being declared,
never pruned. The errors also join `errors` (once each: a Defaults value denied for every
entry is one line), so the commit is not clean and `validate` exits 1.

Entries are shared between loads when they did not change, so their results are kept by
identity: a load that changes one file evaluates one entry again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.declarations.files import FileSource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.declarations.positions import SourceMap
from reconciler.policy.model import Policy
from reconciler.policy.rules import DaemonIdentity, Denial, evaluate
from reconciler.types import EntryId, Revision

Denied = dict[EntryId, tuple[LoadError, ...]]
Generation = tuple[Mapping[EntryId, Entry], Denied]
"""The entries of one load, and the errors of those denied."""


class PolicyCheck:
    """Applies one policy to successive loads of one repository."""

    def __init__(self, policy: Policy, identity: DaemonIdentity) -> None:
        self.policy = policy
        self.identity = identity
        self._generations: tuple[Generation, Generation] = (({}, {}), ({}, {}))
        """The last load and the one before (the daemon also loads the commit an entry was
        last applied at)."""
        self._last: tuple[DesiredState, DesiredState] | None = None
        """The last state given and what it became."""

    def apply(self, desired: DesiredState, files: FileSource) -> DesiredState:
        """`desired` with every entry the policy denies moved to `invalid`."""
        if self._last is not None and _same(self._last[0], desired):
            # The loader shares what did not change: nothing to evaluate again.
            given, result = self._last
            return result if given is desired else result.model_copy(
                update={"revision": desired.revision})
        denied = self._denied(desired, files)
        result = _with_denials(desired, denied) if denied else desired
        self._last = (desired, result)
        return result

    def _denied(self, desired: DesiredState, files: FileSource) -> Denied:
        entries = desired.entries
        (last, last_denied), (older, older_denied) = self._generations
        changed = [i for i, e in entries.items() if last.get(i) is not e]
        denied = {i: errors for i, errors in last_denied.items() if entries.get(i) is last[i]}
        locator = _Locator(files, desired.defaults_location)
        for ident in changed:
            entry = entries[ident]
            if older.get(ident) is entry:
                errors = older_denied.get(ident, ())
            else:
                errors = tuple(locator.error(entry, d)
                               for d in evaluate(entry, self.policy, self.identity))
            if errors:
                denied[ident] = errors
        self._generations = ((entries, denied), self._generations[0])
        return denied


def _same(old: DesiredState, new: DesiredState) -> bool:
    """Whether two loads hold the very same values (everything but the revision)."""
    return all(getattr(old, name) is getattr(new, name) for name in DesiredState.model_fields
               if name not in ("revision", "defaults_location")) and (
        old.defaults_location == new.defaults_location)


def _with_denials(desired: DesiredState, denied: Denied) -> DesiredState:
    entries = {i: e for i, e in desired.entries.items() if i not in denied}
    invalid = dict(sorted({**desired.invalid, **denied}.items()))
    errors = _merged(desired.errors, (e for errors in denied.values() for e in errors))
    # Everything here is validated already, as the loader's own result is.
    return desired.model_copy(update={"entries": entries, "invalid": invalid, "errors": errors})


def _merged(existing: tuple[LoadError, ...], added: Iterable[LoadError]) -> tuple[LoadError, ...]:
    """The loader's errors with the denials after those of the same file, files in path
    order, each distinct line once."""
    seen: set[str] = set()
    unique: list[LoadError] = []
    for error in (*existing, *sorted(added, key=_place)):
        line = f"{error.location}: {error.field}: {error.message}"
        if line not in seen:
            seen.add(line)
            unique.append(error)
    # A stable sort: within a file, the loader's order, then the denials in line order.
    return tuple(sorted(unique, key=lambda e: e.location.path))


def _place(error: LoadError) -> tuple[str, int, int]:
    return error.location.path, error.location.line, error.location.column


class _Locator:
    """Lines and columns of denied fields, parsing a file only when one of its documents
    has a denial."""

    def __init__(self, files: FileSource, defaults: Location | None) -> None:
        self._files = files
        self._defaults = defaults
        self._texts: dict[str, str] = {}
        self._maps: dict[str, SourceMap] = {}
        self._positions: dict[tuple[str, int, tuple[object, ...]], tuple[int, int]] = {}
        """A Defaults value denied for every entry is located once."""
        self._starts: dict[str, dict[int, int]] = {}
        """Per file: the line each document starts at → its index."""

    def error(self, entry: Entry, denial: Denial) -> LoadError:
        place = entry.location
        if self._defaults is not None and (
            denial.origin == "defaults"
            or (denial.origin == "either" and not self._declares(place, denial))
        ):
            place = self._defaults
        line, column = self._position(place, denial)
        # Built from values that are valid already: constructing skips validating them again.
        return LoadError.model_construct(
            location=Location.model_construct(path=place.path, line=line, column=column),
            field=denial.field, message=denial.message, entry=entry.id,
        )

    def _declares(self, place: Location, denial: Denial) -> bool:
        """Whether the entry's own document writes the denied field."""
        key = next((s for s in reversed(denial.loc) if isinstance(s, str)), "")
        if key not in self._text(place.path):
            return False  # cheap: most entries that take a value from Defaults never name it
        index = self._index(place)
        if index is None:
            return True
        _, found = self._map(place.path).locate(index, denial.loc)
        return len(found) == len(denial.loc)

    def _position(self, place: Location, denial: Denial) -> tuple[int, int]:
        key = (place.path, place.line, denial.loc)
        if key not in self._positions:
            index = self._index(place)
            if index is None:
                self._positions[key] = place.line, place.column
            else:
                self._positions[key] = self._map(place.path).locate(
                    index, denial.loc, document_line=place.line)[0]
        return self._positions[key]

    def _index(self, place: Location) -> int | None:
        """Which document of the file starts at `place.line`."""
        if place.path not in self._starts:
            positions = self._map(place.path)
            starts: dict[int, int] = {}
            # Every document after the first begins with `---`: that bounds how many to ask.
            for index in range(self._text(place.path).count("---") + 1):
                (line, _), _ = positions.locate(index, (), document_line=0)
                starts.setdefault(line, index)
            self._starts[place.path] = starts
        return self._starts[place.path].get(place.line)

    def _text(self, path: str) -> str:
        if path not in self._texts:
            try:
                self._texts[path] = self._files.read(path).decode("utf-8-sig", "replace")
            except OSError:
                self._texts[path] = ""  # positions fall back to the start of the document
        return self._texts[path]

    def _map(self, path: str) -> SourceMap:
        if path not in self._maps:
            self._maps[path] = SourceMap(self._text(path))
        return self._maps[path]


class PolicyLoader:
    """A declarations loader whose results have the policy applied: what the daemon uses."""

    def __init__(self, loader: DeclarationLoader, check: PolicyCheck) -> None:
        self._loader = loader
        self._check = check

    def load(self, files: FileSource, revision: Revision | None = None) -> DesiredState:
        return self._check.apply(self._loader.load(files, revision=revision), files)

    def save_cache(self) -> None:
        self._loader.save_cache()

    def save_snapshot(self) -> None:
        self._loader.save_snapshot()
