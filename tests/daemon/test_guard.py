"""The destroy guard (`daemon/guard.py`): what in a commit still names an entry about to be
destroyed, looked up once per commit."""

from __future__ import annotations

from reconciler.daemon.guard import DestroyGuard
from reconciler.types import EntryId, Revision
from tests.support.fakes import MemoryFiles, MemorySource

NET, DB = EntryId("stack/net"), EntryId("stack/db")
NAMING = "apiVersion: reconciler.io/v1alpha2\nkind: Stack\nmetadata:\n  name: net\n"


class CountingSource(MemorySource):
    def __init__(self, files: dict[str, str]) -> None:
        super().__init__(files)
        self.reads = 0

    def files(self, revision: Revision) -> MemoryFiles:
        self.reads += 1
        return super().files(revision)


def test_an_entry_still_named_is_held_once_per_commit() -> None:
    source = CountingSource({"notes.yaml": NAMING})
    guard = DestroyGuard(source)
    assert source.tip is not None
    held = guard.held(source.tip, [NET, DB])
    assert set(held) == {NET}
    assert "notes.yaml" in held[NET]
    assert guard.held(source.tip, [NET, DB]) == held
    assert source.reads == 1  # the same commit is not read again
    gone = source.push({"notes.yaml": None})
    assert guard.held(gone, [NET]) == {}
    assert source.reads == 2
