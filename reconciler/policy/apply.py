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

from collections.abc import Iterable
from itertools import groupby

from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.declarations.files import FileSource
from reconciler.declarations.positions import SourceMap
from reconciler.policy.model import Policy
from reconciler.policy.rules import DaemonIdentity, Denial, evaluate
from reconciler.ports import LoaderPort
from reconciler.types import EntryId, Revision

Results = dict[EntryId, tuple[Entry, tuple[LoadError, ...]]]


class PolicyCheck:
    """Applies one policy to successive loads of one repository."""

    def __init__(self, policy: Policy, identity: DaemonIdentity) -> None:
        self.policy = policy
        self.identity = identity
        self._results: tuple[Results, Results] = ({}, {})
        """Denials of the entries of the last load and the one before."""

    def apply(self, desired: DesiredState, files: FileSource) -> DesiredState:
        """`desired` with every entry the policy denies moved to `invalid`."""
        current: Results = {}
        locator = _Locator(files, desired.defaults_location)
        denied: dict[EntryId, tuple[LoadError, ...]] = {}
        for ident, entry in desired.entries.items():
            known = self._results[0].get(ident) or self._results[1].get(ident)
            if known is not None and known[0] is entry:
                errors = known[1]
            else:
                errors = tuple(locator.error(entry, d) for d in
                               evaluate(entry, self.policy, self.identity))
            current[ident] = (entry, errors)
            if errors:
                denied[ident] = errors
        self._results = (current, self._results[0])
        if not denied:
            return desired
        return _with_denials(desired, denied)


def _with_denials(
    desired: DesiredState, denied: dict[EntryId, tuple[LoadError, ...]]
) -> DesiredState:
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
    for error in (*existing, *sorted(added, key=_position)):
        line = f"{error.location}: {error.field}: {error.message}"
        if line not in seen:
            seen.add(line)
            unique.append(error)
    ordered = sorted(unique, key=lambda e: e.location.path)  # stable: keeps order in a file
    return tuple(e for _, group in groupby(ordered, key=lambda e: e.location.path)
                 for e in group)


def _position(error: LoadError) -> tuple[str, int, int]:
    return error.location.path, error.location.line, error.location.column


class _Locator:
    """Lines and columns of denied fields, parsing a file only when one of its documents
    has a denial."""

    def __init__(self, files: FileSource, defaults: Location | None) -> None:
        self._files = files
        self._defaults = defaults
        self._texts: dict[str, str] = {}
        self._maps: dict[str, SourceMap] = {}

    def error(self, entry: Entry, denial: Denial) -> LoadError:
        place = entry.location
        if self._defaults is not None and (
            denial.origin == "defaults"
            or (denial.origin == "either" and not self._declares(place, denial))
        ):
            place = self._defaults
        line, column = self._position(place, denial)
        return LoadError(
            location=Location(path=place.path, line=line, column=column),
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
        index = self._index(place)
        if index is None:
            return place.line, place.column
        (line, column), _ = self._map(place.path).locate(
            index, denial.loc, document_line=place.line)
        return line, column

    def _index(self, place: Location) -> int | None:
        """Which document of the file starts at `place.line`."""
        positions = self._map(place.path)
        for index in range(self._text(place.path).count("---") + 1):
            (line, _), _ = positions.locate(index, (), document_line=0)
            if line == place.line:
                return index
        return None

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

    def __init__(self, loader: LoaderPort, check: PolicyCheck) -> None:
        self._loader = loader
        self._check = check

    def load(self, files: FileSource, revision: Revision | None = None) -> DesiredState:
        return self._check.apply(self._loader.load(files, revision=revision), files)

    def save_cache(self) -> None:
        self._loader.save_cache()
