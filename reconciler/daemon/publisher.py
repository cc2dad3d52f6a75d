"""The status branch as the daemon last wrote it, and the one commit per cycle that brings it up
to date (DESIGN §3).

A commit is made when a phase, a run, an error or the commit read changed; the progress of a
run in flight (its log tail growing) waits for the next such change. A status branch that lost
files since (a reset, a force-push, a hand edit) gets them back in that commit.

While runs are in flight, cycles can come every few milliseconds (short runs ending), and a
commit and push per cycle would cost more than the runs. Then commits are at least
COALESCE_SECONDS apart: what changed meanwhile is held and goes into the next commit, whose
message lists every run that finished since the last one, and the finished runs are
acknowledged to the executor only once it is pushed. Nothing waits when
- nothing is in flight any more (the daemon goes idle: a `--once` ends that way),
- the daemon stops (`release`, before SIGTERM ends it or `run_now` returns),
- the status branch was rewritten or edited (the repair is due at once),
- the load errors or the refusal of the newest commit changed (errors.yaml: the user who
  pushed a typo or an unsigned commit is waiting to read why), or
- a destroy starts or ends: it cannot be undone, and whoever removed the declaration
  watches for it; the status branch says so at once, as it did before any run was held.
A run starting or ending otherwise, its phase, its exit code, waits for the next commit:
within the second, which nobody reading the branch can tell from at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from loguru import logger

from reconciler import status as status_files
from reconciler.daemon.inputs import Inputs
from reconciler.declarations.entries import LoadError
from reconciler.ports import SourcePort
from reconciler.records import EntryRecord
from reconciler.redact import Redactor
from reconciler.runs import RunReport
from reconciler.types import DriftState, EntryId, Operation, Revision, RunId

SUBJECT_ENTRIES = 4
"""Entries named in a status commit's subject; the rest are counted."""
COALESCE_SECONDS = 1.0
"""While runs are in flight, the least time between two status commits."""


@dataclass
class Held:
    """What happened since the last commit, while the next one waits."""

    finished: dict[RunId, RunReport] = field(default_factory=dict)
    started: int = 0


class StatusPublisher:
    def __init__(self, source: SourcePort, *, redact: Redactor,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._clock = clock
        self._renderer = status_files.Renderer(branch=source.branch, redact=redact)
        self.pushed: dict[str, bytes] = {}
        """The files of the status tree as the branch holds them."""
        self._records: dict[EntryId, EntryRecord] = {}
        """The records as the last status commit (or the branch read back) has them."""
        self._revision: Revision | None = None
        self._unchanged: Inputs | None = None
        """The inputs of the last call that pushed nothing or pushed all it had: the same
        inputs again render the same files, so they are not rendered again."""
        self._errors: tuple[LoadError, ...] = ()
        self._refusal: status_files.CommitRefusal | None = None
        """The errors and refusal of the last commit."""
        self._pushed_at: float | None = None
        self._held: Held | None = None
        self._released = False

    @property
    def holding(self) -> bool:
        """Whether a commit is held back: its finished runs are not to be acknowledged yet."""
        return self._held is not None

    def due_in(self) -> float:
        """Seconds until a held commit may be made."""
        if self._pushed_at is None:
            return 0.0
        return max(0.0, self._pushed_at + COALESCE_SECONDS - self._clock())

    def release(self) -> None:
        """The next call commits what is held, whatever is in flight (the daemon stops)."""
        self._released = True

    def restored(self, files: Mapping[str, bytes],
                 records: Mapping[EntryId, EntryRecord]) -> None:
        """What the status branch held when it was read back."""
        self.pushed = {p: d for p, d in files.items() if p.startswith(status_files.ROOT + "/")}
        self._records, self._revision = dict(records), None
        self._unchanged = None

    def publish(self, records: Mapping[EntryId, EntryRecord], errors: Iterable[LoadError], *,
                revision: Revision | None, refusal: status_files.CommitRefusal | None,
                finished: Sequence[RunReport], started: int, busy: bool = False,
                destroying: bool = False) -> bool:
        """Commit and push what changed; True when a commit was pushed. `busy`: runs are in
        flight, so the commit may be held (`holding`) until COALESCE_SECONDS after the last,
        unless `destroying` (a destroy was just started) or another change must not wait.
        Raises when the push failed: nothing is lost, the next call pushes it."""
        errors = tuple(errors)
        moved = self._source.status_changed()
        last = self._unchanged
        if (moved is None and not finished and self._held is None and last is not None
                and last.same(records, errors, revision, refusal)):
            return False
        busy, self._released = busy and not self._released, False
        if (busy and not destroying and moved is None and self.due_in() > 0
                and not self._urgent(errors, refusal, finished)):
            held = self._held = self._held or Held()
            held.finished.update((r.run_id, r) for r in finished)
            held.started += started
            return False  # before rendering: a held cycle costs nothing per entry
        if self._held is not None:
            finished = list({**self._held.finished, **{r.run_id: r for r in finished}}.values())
            started += self._held.started
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
            self._published(records, errors, revision, refusal)
            return False
        message = self._message(records, revision, finished, started)
        if moved is not None and moved.rewritten:
            message += f"\nThe branch {moved.reason}: its status files are written again.\n"
        self._source.write_status(changes, message)
        self._pushed_at = self._clock()
        self.pushed.update(files)
        for path in [p for p, data in changes.items() if data is None]:
            del self.pushed[path]
        self._records, self._revision = dict(records), revision
        self._published(records, errors, revision, refusal)
        return True

    def _published(self, records: Mapping[EntryId, EntryRecord], errors: tuple[LoadError, ...],
                   revision: Revision | None, refusal: status_files.CommitRefusal | None) -> None:
        """The branch now shows all these inputs say: nothing is held."""
        self._held = None
        self._errors, self._refusal = errors, refusal
        self._unchanged = Inputs.of(records, errors, revision, refusal)

    def _urgent(self, errors: tuple[LoadError, ...], refusal: status_files.CommitRefusal | None,
                finished: Sequence[RunReport]) -> bool:
        """What must not wait for the next commit (see the module's docstring)."""
        return (errors != self._errors or refusal != self._refusal
                or any(r.operation is Operation.DESTROY for r in finished))

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
        before = self._records
        # An unchanged record is the same object: only the others can have moved.
        touched = sorted(entry for entry, record in records.items()
                         if record is not before.get(entry))
        moved = [f"{records[entry].entry} {headline(records[entry])}" for entry in touched
                 if headline(records[entry]) != headline(before.get(entry))]
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
