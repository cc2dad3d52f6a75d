"""Which entries a cycle must plan: those whose inputs to `plan` changed since the last plan,
those whose time has come, and those the last plan left unsettled.

`plan` decides for an entry from its declaration, its record, its run in flight, its `held`,
the declarations, records and runs of its dependencies, and the time; an entry no longer
declared also from what the commit says of its files (`files_with_errors`, `clean`). An entry
none of whose inputs changed since a plan that started nothing for it, and whose timer has not
come, is decided the same again: its record stays as it is. So after the first plan (of every
entry) a cycle plans only the entries that are *dirty*:

- their declaration object changed (the loader keeps an unchanged `Entry` the same object), or
  their load errors did;
- their record or their run in flight changed (by identity: an equal copy costs one more plan);
- their `held` changed;
- their timer is due (a retry's backoff ends, a cron or drift cron fires: `Plan.timers`);
- the last plan started them; of those it left waiting for a free slot, as many as there are
  free slots now, in the order `plan` hands slots out (the others would wait again);
- no longer declared, when the commit's unreadable files or its cleanliness changed;
- they depend on one of the above: the dependency rules read the dependencies' declarations,
  records and runs. Direct dependents suffice: a dependent's own record changes only through
  its own plan, and its dependents are planned in the cycle after that.

The entries an update of the last plan changed are dirty by the second rule: the cycle after
a change plans them again (confirming the fixed point), at the cost of those entries only.
`tests/plan/test_settled.py` checks, over random histories, that planning the dirty entries
leaves every record where planning all of them would.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from reconciler.declarations.entries import DesiredState
from reconciler.plan import ActiveRun, Plan
from reconciler.records import EntryRecord
from reconciler.status import changed_entries
from reconciler.types import EntryId


class Timers:
    """A time per entry: the earliest, and the entries whose time has come, without looking
    at every entry."""

    def __init__(self) -> None:
        self._at: dict[EntryId, datetime] = {}
        self._heap: list[tuple[datetime, EntryId]] = []
        """Every time set, some replaced since (those are dropped when found)."""

    def put(self, entry_id: EntryId, when: datetime | None) -> None:
        if when is None:
            self._at.pop(entry_id, None)
            return
        if self._at.get(entry_id) == when:
            return
        self._at[entry_id] = when
        heapq.heappush(self._heap, (when, entry_id))
        if len(self._heap) > 2 * len(self._at) + 64:
            self._heap = [(at, e) for e, at in self._at.items()]
            heapq.heapify(self._heap)

    def replace(self, times: Mapping[EntryId, datetime]) -> None:
        self._at = dict(times)
        self._heap = [(at, e) for e, at in self._at.items()]
        heapq.heapify(self._heap)

    def _current(self, item: tuple[datetime, EntryId]) -> bool:
        return self._at.get(item[1]) == item[0]

    def earliest(self) -> datetime | None:
        heap = self._heap
        while heap and not self._current(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: datetime) -> set[EntryId]:
        """The entries whose time is at or before `now` (the heap's subtree of those)."""
        heap, found, todo = self._heap, set(), [0]
        while todo:
            i = todo.pop()
            if i < len(heap) and heap[i][0] <= now:
                if self._current(heap[i]):
                    found.add(heap[i][1])
                todo += (2 * i + 1, 2 * i + 2)
        return found


class Planned:
    """What the last plan read and decided, to tell which entries the next one must plan."""

    def __init__(self, desired: DesiredState, records: Mapping[EntryId, EntryRecord], *,
                 active: Mapping[EntryId, ActiveRun], held: Mapping[EntryId, str],
                 decided: Plan, candidates: Iterable[EntryId]) -> None:
        """After a plan of every entry."""
        self.desired = desired
        self.records = dict(records)
        """The records as the last plan read them."""
        self.active = dict(active)
        self.held = dict(held)
        self.dependents: dict[EntryId, set[EntryId]] = {}
        for entry in desired.entries.values():
            self._link(entry.id, entry.depends_on)
        self.timers = Timers()
        self.timers.replace(decided.timers)
        self.wakes = Timers()
        self.wakes.replace(decided.wakes)
        self.candidates = set(candidates)
        self.unsettled = {s.entry_id for s in decided.starts}
        self.waiting = set(decided.waiting)
        """The entries waiting for a free slot: kept, not planned again, while no slot is free;
        with many runs queued, planning them all each cycle would cost the queue's length."""

    def _link(self, entry_id: EntryId, depends_on: Iterable[EntryId]) -> None:
        for dep in depends_on:
            self.dependents.setdefault(dep, set()).add(entry_id)

    def _unlink(self, entry_id: EntryId, depends_on: Iterable[EntryId]) -> None:
        for dep in depends_on:
            users = self.dependents.get(dep)
            if users is not None:
                users.discard(entry_id)
                if not users:
                    del self.dependents[dep]

    @property
    def wake_at(self) -> datetime | None:
        """The earliest time a waiting retry becomes due."""
        return self.wakes.earliest()

    def changed(self, desired: DesiredState, records: Mapping[EntryId, EntryRecord],
                active: Mapping[EntryId, ActiveRun]) -> set[EntryId]:
        """The entries whose declaration, load errors, record or run in flight changed since
        the last plan, the entries it left unsettled, and every entry no longer declared when
        what the commit says of its files changed."""
        dirty = set(self.unsettled)
        before = self.desired
        if desired is not before:
            dirty |= changed_entries(before.entries, desired.entries)
            if desired.invalid is not before.invalid:
                dirty.update(k for k, v in desired.invalid.items()
                             if before.invalid.get(k) != v)
                dirty.update(before.invalid.keys() - desired.invalid.keys())
            if (desired.files_with_errors, desired.clean) != (before.files_with_errors,
                                                              before.clean):
                dirty |= records.keys() - desired.entries.keys() - desired.invalid.keys()
        if self.records != records:  # a C comparison, cheaper than the walk when none changed
            dirty |= changed_entries(self.records, records)
        dirty.update(k for k in active.keys() | self.active.keys()
                     if active.get(k) != self.active.get(k))
        return dirty

    def to_plan(self, changed: Collection[EntryId], held: Mapping[EntryId, str],
                now: datetime, *, free_slots: int | None) -> set[EntryId]:
        """`changed` (see `changed`), with the entries whose `held` changed, those whose timer
        is due at `now`, the first `free_slots` of those waiting for a slot (all of them when
        None: no limit), and the dependents of them all.

        The waiting entries left out would wait again: a plan hands slots out in its order
        (declared entries by id, then those no longer declared), so the first `free_slots`
        wanting a slot are among the dirty ones and the first `free_slots` waiting."""
        dirty = set(changed)
        if free_slots is None:
            dirty |= self.waiting
        elif free_slots > 0 and self.waiting:
            entries = self.desired.entries
            dirty.update(heapq.nsmallest(free_slots, self.waiting,
                                         key=lambda e: (e not in entries, e)))
        dirty.update(k for k in held.keys() | self.held.keys()
                     if held.get(k) != self.held.get(k))
        dirty |= self.timers.due(now)
        for entry_id in list(dirty):
            dirty |= self.dependents.get(entry_id, set())
        return dirty

    def destroy_candidates(self, changed: Collection[EntryId],
                           of_changed: Iterable[EntryId]) -> list[EntryId]:
        """The destroy candidates now: the last plan's, but for the `changed` entries, whose
        candidates are `of_changed`."""
        return sorted((self.candidates - set(changed)) | set(of_changed))

    def planned(self, desired: DesiredState, records: Mapping[EntryId, EntryRecord], *,
                active: Mapping[EntryId, ActiveRun], held: Mapping[EntryId, str],
                decided: Plan, only: Collection[EntryId],
                candidates: Iterable[EntryId]) -> None:
        """After a plan of the entries `only` (a superset of those whose inputs changed) from
        these inputs, `records` as it read them."""
        before = self.desired.entries
        for entry_id in only:
            old, new = before.get(entry_id), desired.entries.get(entry_id)
            if old is not new:
                if old is not None:
                    self._unlink(entry_id, old.depends_on)
                if new is not None:
                    self._link(entry_id, new.depends_on)
            self.timers.put(entry_id, decided.timers.get(entry_id))
            self.wakes.put(entry_id, decided.wakes.get(entry_id))
        # What the plan read: for the entries outside `only`, the same records (or equal
        # ones); a copy, in the order of `records`, so the next walk is the fast one.
        self.records = dict(records)
        self.desired = desired
        self.active = dict(active)
        self.held = dict(held)
        self.candidates = set(candidates)
        self.unsettled = {s.entry_id for s in decided.starts}
        self.waiting = (self.waiting - set(only)) | decided.waiting
