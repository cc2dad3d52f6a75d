"""The inputs of a stage's last call, kept to tell whether the next call's are equal: a stage
whose output is a function of them (the status files) then skips the work, which keeps a cycle
with nothing to do independent of how many entries there are. Plan and the metrics go further
and redo only the entries whose inputs changed (`dirty`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.records import EntryRecord
from reconciler.types import EntryId


@dataclass(frozen=True)
class Inputs:
    records: dict[EntryId, EntryRecord]
    """A copy: the daemon updates its records in place."""
    rest: tuple[object, ...]

    @classmethod
    def of(cls, records: Mapping[EntryId, EntryRecord], *rest: object) -> Inputs:
        return cls(dict(records), rest)

    def same(self, records: Mapping[EntryId, EntryRecord], *rest: object) -> bool:
        # Containers compare their items by identity first, so 10,000 unchanged records (or
        # the same declarations object) cost a pointer walk, not a model comparison each.
        return self.rest == rest and self.records == records
