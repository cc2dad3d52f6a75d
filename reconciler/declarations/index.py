"""What the declaration files of a commit declare, and where: kept up to date file by file.

The index answers the questions the cross-file checks ask (which documents declare an
identity, which one counts, where the Defaults are, which files could not be read) without
going over every file again when one changes.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.declarations.checks import Declared
from reconciler.declarations.documents import FileResult
from reconciler.types import EntryId, Kind


def _order(declared: Declared) -> tuple[str, int]:
    """The order documents are declared in: by path (the order Git lists files in), then by
    position in the file."""
    return declared[0].path, declared[1].index


@dataclass(slots=True)
class Touched:
    """What one update of the index changed."""

    places: dict[EntryId, list[Declared]] = field(default_factory=dict)
    """Identities declared (or no longer declared) in a changed file, with where they were
    declared before."""
    defaults: bool = False
    """A Defaults document, or a broken file that may hold one, came or went."""
    unreadable: bool = False
    """The files that could not be read are not the same."""
    declaring: bool = False
    """The declaration files are not the same."""


class Index:
    def __init__(self) -> None:
        self.files: dict[str, FileResult] = {}
        """Every declaration file (every `*.yaml`/`*.yml` in scope) by path."""
        self.places: dict[EntryId, list[Declared]] = {}
        """Every document naming a Task or Stack, by identity, in declared order."""
        self.defaults: list[Declared] = []
        """Every Defaults document, valid or not, in declared order."""
        self.broken: set[str] = set()
        """Files that could not be parsed and have a `kind: Defaults` line."""
        self.unreadable: tuple[str, ...] = ()
        """Files whose entries could be missing (sorted)."""
        self.declaring: frozenset[str] = frozenset()
        self._unreadable: set[str] = set()
        self._declaring: set[str] = set()

    def update(self, results: Iterable[tuple[str, FileResult | None]]) -> Touched:
        """Replace the files given (None: the file is gone)."""
        touched = Touched()
        for path, result in results:
            old = self.files.pop(path, None)
            if old is not None:
                self._forget(old, touched)
            if result is not None:
                self.files[path] = result
                self._remember(result, touched)
            unreadable = result is not None and result.unreadable
            if unreadable != (path in self._unreadable):
                touched.unreadable = True
                (self._unreadable.add if unreadable else self._unreadable.discard)(path)
            declares = result is not None and result.declares
            if declares != (path in self._declaring):
                touched.declaring = True
                (self._declaring.add if declares else self._declaring.discard)(path)
        if touched.unreadable:
            self.unreadable = tuple(sorted(self._unreadable))
        if touched.declaring:
            self.declaring = frozenset(self._declaring)
        return touched

    def candidate(self, ident: EntryId) -> Declared | None:
        """The declaration an entry is built from: the last valid one (when there are more,
        all of them are reported as duplicates)."""
        for place in reversed(self.places.get(ident, ())):
            # Only entry documents have an identity, so any valid one declares the entry.
            if place[1].model is not None:
                return place
        return None

    def _forget(self, old: FileResult, touched: Touched) -> None:
        for doc in old.documents:
            if doc.id is not None:
                places = self.places.get(doc.id, [])
                touched.places.setdefault(doc.id, list(places))
                places[:] = [p for p in places if p[1] is not doc]
                if not places:
                    self.places.pop(doc.id, None)
            if doc.kind is Kind.DEFAULTS:
                self.defaults = [p for p in self.defaults if p[1] is not doc]
                touched.defaults = True
        if old.may_hold_defaults and old.errors:
            self.broken.discard(old.path)
            touched.defaults = True

    def _remember(self, new: FileResult, touched: Touched) -> None:
        for doc in new.documents:
            if doc.id is not None:
                places = self.places.setdefault(doc.id, [])
                touched.places.setdefault(doc.id, list(places))
                insort(places, (new, doc), key=_order)
            if doc.kind is Kind.DEFAULTS:
                insort(self.defaults, (new, doc), key=_order)
                touched.defaults = True
        if new.may_hold_defaults and new.errors:
            self.broken.add(new.path)
            touched.defaults = True
