"""The status branch as the daemon last wrote it, and the one commit per cycle that brings it up
to date (DESIGN §3).

A commit is made when a phase, a run, an error or the commit read changed; the progress of a
run in flight (its log tail growing) waits for the next such change. A status branch that lost
files since (a reset, a force-push, a hand edit) gets them back in that commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from loguru import logger

from reconciler import status as status_files
from reconciler.daemon.inputs import Inputs
from reconciler.declarations.entries import LoadError
from reconciler.ports import SourcePort
from reconciler.records import EntryRecord
from reconciler.redact import Redactor
from reconciler.runs import RunReport
from reconciler.types import DriftState, EntryId, Revision

SUBJECT_ENTRIES = 4
"""Entries named in a status commit's subject; the rest are counted."""


class StatusPublisher:
    def __init__(self, source: SourcePort, *, redact: Redactor) -> None:
        self._source = source
        self._renderer = status_files.Renderer(branch=source.branch, redact=redact)
        self.pushed: dict[str, bytes] = {}
        """The files of the status tree as the branch holds them."""
        self._records: dict[EntryId, EntryRecord] = {}
        """The records as the last status commit (or the branch read back) has them."""
        self._revision: Revision | None = None
        self._unchanged: Inputs | None = None
        """The inputs of the last call that pushed nothing or pushed all it had: the same
        inputs again render the same files, so they are not rendered again."""

    def restored(self, files: Mapping[str, bytes],
                 records: Mapping[EntryId, EntryRecord]) -> None:
        """What the status branch held when it was read back."""
        self.pushed = {p: d for p, d in files.items() if p.startswith(status_files.ROOT + "/")}
        self._records, self._revision = dict(records), None
        self._unchanged = None

    def publish(self, records: Mapping[EntryId, EntryRecord], errors: Iterable[LoadError], *,
                revision: Revision | None, refusal: status_files.CommitRefusal | None,
                finished: Sequence[RunReport], started: int) -> bool:
        """Commit and push what changed; True when a commit was pushed. Raises when the push
        failed: nothing is lost, the next call pushes it."""
        errors = tuple(errors)
        moved = self._source.status_changed()
        last = self._unchanged
        if (moved is None and not finished and last is not None
                and last.same(records, errors, revision, refusal)):
            return False
        self._unchanged = None  # until this call has returned
        files = self._renderer.render(records, errors, revision=revision, refusal=refusal)
        if moved is not None:
            self.pushed = dict(moved.files)  # diff against what is there now
        changes = status_files.changed_files(self.pushed, files)
        if moved is not None and (moved.rewritten or changes):
            logger.warning("status branch {} {}; writing {} status file(s) again",
                           self._source.status_branch, moved.reason, len(changes))
        if not changes or not (finished or moved is not None
                               or self._worth_a_commit(changes, records, revision)):
            self._unchanged = Inputs.of(records, errors, revision, refusal)
            return False
        message = self._message(records, revision, finished, started)
        if moved is not None and moved.rewritten:
            message += f"\nThe branch {moved.reason}: its status files are written again.\n"
        self._source.write_status(changes, message)
        self.pushed.update(files)
        for path in [p for p, data in changes.items() if data is None]:
            del self.pushed[path]
        self._records, self._revision = dict(records), revision
        self._unchanged = Inputs.of(records, errors, revision, refusal)
        return True

    def _worth_a_commit(self, changes: Mapping[str, bytes | None],
                        records: Mapping[EntryId, EntryRecord], revision: Revision | None) -> bool:
        """Whether a commit of `changes` tells anything: a record that changed more than the
        progress of its run in flight, an error, another commit read. The README only
        summarises those."""
        for path in changes:
            if path == status_files.README:
                if revision != self._revision:
                    return True
                continue
            entry = status_files.entry_of(path)
            if entry is None or status_files.worth_committing(
                    records.get(entry), self._records.get(entry)):
                return True
        return False

    def _message(self, records: Mapping[EntryId, EntryRecord], revision: Revision | None,
                 finished: Sequence[RunReport], started: int) -> str:
        """`status: task/a Succeeded, stack/b Drifted` (what changed phase or drift since the
        last push), then a line per finished run."""
        moved = [f"{record.entry} {headline(record)}"
                 for entry, record in sorted(records.items())
                 if headline(record) != headline(self._records.get(entry))]
        summary = ", ".join(moved[:SUBJECT_ENTRIES])
        if len(moved) > SUBJECT_ENTRIES:
            summary += f" and {len(moved) - SUBJECT_ENTRIES} more"
        if not summary:
            counts = [f"{len(finished)} run{'s' if len(finished) != 1 else ''} finished"
                      if finished else "", f"{started} started" if started else ""]
            summary = ", ".join(c for c in counts if c) or "records updated"
        source = f" at {revision[:12]}" if revision else ""
        lines = [f"status: {summary}{source}", ""]
        lines += [f"{r.entry_id}: {r.state.value} ({r.run_id})" for r in finished]
        return "\n".join(lines).rstrip() + "\n"


def headline(record: EntryRecord | None) -> str:
    """A record's phase as a person scanning the status history wants it: `Succeeded`,
    `Drifted` for a stack whose last drift plan found changes."""
    if record is None:
        return ""
    if record.drift is not None and record.drift.state is DriftState.DRIFTED:
        return DriftState.DRIFTED.value
    return record.phase.value
