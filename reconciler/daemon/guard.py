"""What holds back a destroy: any YAML document in the commit that still names the entry.

A destroy cannot be undone, so an entry about to be destroyed whose name still appears anywhere
in the commit (misspelt out of being a declaration, in a file that does not parse, under another
apiVersion) is held: `plan` records it Orphaned with the reason. Looked up once per commit.
"""

from __future__ import annotations

from collections.abc import Iterable

from loguru import logger

from reconciler.declarations.named import refusal, still_named
from reconciler.ports import SourcePort
from reconciler.types import EntryId, Revision, split_entry_id


class DestroyGuard:
    def __init__(self, source: SourcePort) -> None:
        self._source = source
        self._named: dict[EntryId, tuple[Revision, str | None]] = {}
        """Per entry about to be destroyed: the commit looked at, and what still names it."""

    def held(self, revision: Revision, candidates: Iterable[EntryId]) -> dict[EntryId, str]:
        """Why each of `candidates` is still named at `revision`; absent when it is not."""
        wanted = list(candidates)
        unknown = [e for e in wanted if self._named.get(e, (None, None))[0] != revision]
        if unknown:
            found = still_named(self._source.files(revision), ".",
                                sorted({split_entry_id(e)[1] for e in unknown}))
            for entry_id in unknown:
                where = found.get(split_entry_id(entry_id)[1])
                reason = refusal(where) if where is not None else None
                self._named[entry_id] = (revision, reason)
                if reason is not None:
                    logger.bind(entry=entry_id).warning("{} {}", entry_id, reason)
        held = {e: self._named[e][1] for e in wanted}
        return {e: reason for e, reason in held.items() if reason is not None}
