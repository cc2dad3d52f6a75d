"""Following the tracked branch: fetch when the remote moved, verify, load the declarations.

A failed fetch or load backs off exponentially and is retried; the last declarations that
loaded stay in force meanwhile. A commit counts as seen only once it loaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from loguru import logger

from reconciler import status as status_files
from reconciler.declarations.entries import DesiredState, Entry, LoadError, Location
from reconciler.metrics import Metrics
from reconciler.ports import LoaderPort, SourcePort
from reconciler.redact import Redactor
from reconciler.scheduler import jittered
from reconciler.source.signatures import CommitGate, SignatureCheck
from reconciler.types import Kind, Revision, split_entry_id

MAX_FETCH_BACKOFF = timedelta(minutes=5)


class SourceSync:
    """The declarations in force, and how the newest commit relates to them."""

    def __init__(self, *, source: SourcePort, loader: LoaderPort, metrics: Metrics,
                 interval: timedelta, redact: Redactor, signatures: SignatureCheck | None,
                 expect: Callable[[Sequence[Entry]], None]) -> None:
        self.source = source
        self.loader = loader
        self.metrics = metrics
        self.redact = redact
        self._expect = expect
        self.desired = DesiredState()
        self.revision: Revision | None = None
        """The commit the declarations were last loaded from."""
        self._head: Revision | None = None
        """The newest commit whose declarations are in force (differs from `revision` only by
        our own status commits when the status branch is the tracked branch)."""
        self._fetched: Revision | None = None
        """The newest commit fetched; ahead of `_head` while it has not loaded."""
        self.load_failure: LoadError | None = None
        """Why the newest commit could not be loaded, while it cannot (errors.yaml shows it)."""
        self.synced = threading.Event()
        self._fetch_backoff = Backoff(interval)
        self._load_backoff = Backoff(interval)
        self.gate = None if signatures is None or not signatures.enabled else CommitGate(
            signatures, branch=source.branch, status_branch=source.status_branch,
            metrics=metrics)
        self.refusal: status_files.CommitRefusal | None = None
        """The newest commit, when commit verification refused it."""

    def sync(self, now: datetime, *, fetch: bool, urgent: bool) -> None:
        """Fetch when the remote head moved; load declarations when the revision changed."""
        if urgent:
            self._fetch_backoff.clear()
            self._load_backoff.clear()
        if fetch and self._fetch_backoff.ready(now):
            self._fetch(now)
        head = self._fetched
        if head is None or head == self._head or not self._load_backoff.ready(now):
            return
        previous = self._head
        try:
            if previous is None or not self.source.only_status_changed(previous, head):
                target = self._verified(head)
                if target is not None and target != self.revision:
                    self._load(target)
                if self.refusal is not None and self.refusal.result == "error":
                    return  # the verifier could not run: this head is looked at again next poll
        except Exception as err:
            self._load_failed(head, err, now)
            raise
        self._head, self.load_failure = head, None
        self._load_backoff.clear()
        self.metrics.mark_synced()
        self.synced.set()

    def _fetch(self, now: datetime) -> None:
        began = time.monotonic()
        try:
            head = self.source.head()
            if head is not None and head != self._fetched:
                head = self.source.fetch()
        except Exception:
            self.metrics.observe_fetch("error", time.monotonic() - began)
            self._fetch_backoff.failed(now)
            raise
        self.metrics.observe_fetch("success", time.monotonic() - began)
        self._fetch_backoff.clear()
        if head is None:
            raise LookupError(f"branch {self.source.branch!r} does not exist on the remote")
        if head == self._head:
            self.metrics.mark_synced()
            self.synced.set()
        self._fetched = head

    def _load_failed(self, head: Revision, err: Exception, now: datetime) -> None:
        """Whatever broke the load (the loader reports bad files as errors, so this is a
        fault of ours or of the object database), the commit is not taken as seen: it is
        loaded again after a backoff, and errors.yaml says why until it loads."""
        self.metrics.observe_load("error")
        retry_at = self._load_backoff.failed(now)
        in_force = f"{self.revision[:12]} stay in force" if self.revision else "none are in force"
        self.load_failure = LoadError(
            location=Location(path="."),
            message=self.redact(
                f"commit {head[:12]} could not be loaded ({type(err).__name__}: {err}); "
                f"the declarations of {in_force}; retrying at {retry_at:%Y-%m-%dT%H:%M:%SZ}"),
        )

    def _verified(self, head: Revision) -> Revision | None:
        """The commit whose declarations are in force for `head`: itself, unless commit
        verification refuses it; then the last verified commit, or None (`source.signatures`)."""
        if self.gate is None:
            self.metrics.set_head(self.source.branch, head, "none")
            return head
        decision = self.gate.decide(head, self.source.signed_commit)
        verdict = decision.verdict
        self.refusal = None if verdict.verified else status_files.CommitRefusal(
            commit=head, branch=self.source.branch, result=verdict.result,
            reason=self.redact(verdict.reason), in_force=decision.in_force)
        return decision.in_force

    def save_snapshot(self) -> None:
        """Let the loader save the last load whole for a restart (in a cycle after the
        load: the save is slow, and not on the way to a plan)."""
        self.loader.save_snapshot()

    def _load(self, revision: Revision) -> None:
        desired = self.loader.load(self.source.files(revision), revision=revision)
        self.metrics.observe_load("success")
        try:
            self.loader.save_cache()
        except OSError as err:  # only a cache: the next restart parses again
            logger.warning("cannot save the declarations cache: {}", err)
        self.desired, self.revision = desired, revision
        self._expect(list(desired.entries.values()))
        self.metrics.set_revision(self.source.branch, revision)
        self.metrics.set_declarations(_counts(desired))
        logger.info("loaded {} entries at {} ({} errors)", len(desired.entries), revision[:12],
                    len(desired.errors))
        for error in desired.errors:
            logger.warning("invalid declaration: {}", error)


def _counts(desired: DesiredState) -> dict[tuple[Kind | str, bool], int]:
    """Declarations by kind and validity, for the metrics."""
    counts: dict[tuple[Kind | str, bool], int] = {}
    for entry in desired.entries.values():
        counts[(entry.kind, True)] = counts.get((entry.kind, True), 0) + 1
    for entry_id in desired.invalid:
        kind = split_entry_id(entry_id)[0]
        counts[(kind, False)] = counts.get((kind, False), 0) + 1
    if desired.files_with_errors:
        # Files whose entries could not even be named (a YAML syntax error): counted
        # apart, so an alert can say "unreadable" rather than point at no entry.
        counts[("unknown", False)] = len(desired.files_with_errors)
    return counts


class Backoff:
    """Exponential backoff with jitter after consecutive failures, capped at five minutes."""

    def __init__(self, interval: timedelta) -> None:
        self._interval = interval
        self._failures = 0
        self._next: datetime | None = None

    def ready(self, now: datetime) -> bool:
        return self._next is None or now >= self._next

    def failed(self, now: datetime) -> datetime:
        """Count a failure; when to try again."""
        self._failures += 1
        delay = min(self._interval * 2 ** min(self._failures - 1, 30), MAX_FETCH_BACKOFF)
        self._next = now + timedelta(seconds=jittered(delay.total_seconds()))
        return self._next

    def clear(self) -> None:
        self._failures, self._next = 0, None
