"""The labels and annotations that tie a Kubernetes object to a run.

Labels are for selecting (`kubectl get jobs -l reconciler.io/entry=nightly`, the executor's own
list + watch); annotations carry what a label value cannot hold (`task/NAME`, a 64-character
spec hash, timestamps). Together they let a restarted daemon rebuild every run report from the
Jobs it finds, without a journal of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from reconciler.declarations.entries import Entry
from reconciler.types import EntryId, Operation, Revision, RunId, SpecHash, Trigger

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "reconciler"
INSTANCE = "reconciler.io/instance"
ENTRY = "reconciler.io/entry"
KIND = "reconciler.io/kind"
SPEC_HASH = "reconciler.io/spec-hash"
OPERATION = "reconciler.io/operation"
RUN_ID = "reconciler.io/run-id"

SPEC_HASH_LABEL_LENGTH = 16
"""A label value holds at most 63 characters: the label carries a prefix of the hash (enough
to select by), the annotation the whole of it."""

_PREFIX = "reconciler.io/"
ANNOTATION_ENTRY = _PREFIX + "entry-id"
ANNOTATION_SPEC_HASH = _PREFIX + "spec-hash"
ANNOTATION_OPERATION = _PREFIX + "operation"
ANNOTATION_TRIGGER = _PREFIX + "trigger"
ANNOTATION_ATTEMPT = _PREFIX + "attempt"
ANNOTATION_REVISION = _PREFIX + "revision"
ANNOTATION_REQUESTED_AT = _PREFIX + "requested-at"
ANNOTATION_ACKNOWLEDGED = _PREFIX + "acknowledged"
"""Set once the daemon has recorded the finished run, so a restart does not report it again."""
ANNOTATION_FAILURE = _PREFIX + "failure"
"""Set when the executor gave up on a pod that cannot start (a missing Secret, a bad image):
the message the run is reported Failed with, kept on the Job so a restart reports the same."""
ANNOTATION_FAILED_AT = _PREFIX + "failed-at"

RESERVED_PREFIXES = ("app.kubernetes.io/", "reconciler.io/")

MAIN_CONTAINER = "run"
"""The container that runs the task or the stack runner: its log is the run's log."""


def selector(instance: str) -> str:
    """The label selector of every object one daemon deployment manages."""
    return f"{MANAGED_BY}={MANAGER},{INSTANCE}={instance}"


def run_labels(
    entry: Entry, run_id: RunId, operation: Operation, *, instance: str
) -> dict[str, str]:
    """The entry's own labels, then ours (ours win: the executor selects by them). An entry
    label under a prefix the deployment selects by (`app.kubernetes.io/`, `reconciler.io/`)
    is left out: `app.kubernetes.io/name: reconciler` would put a run's pod behind the
    daemon's Service and under the daemon's NetworkPolicy."""
    labels = {k: v for k, v in entry.labels.items() if not k.startswith(RESERVED_PREFIXES)}
    labels.update({
        MANAGED_BY: MANAGER,
        INSTANCE: instance,
        ENTRY: entry.name,
        KIND: entry.kind.prefix,
        SPEC_HASH: entry.spec_hash[:SPEC_HASH_LABEL_LENGTH],
        OPERATION: operation.value,
        RUN_ID: run_id,
    })
    return labels


class RunMeta(BaseModel):
    """What a Job's annotations say about the run it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: RunId
    entry_id: EntryId
    spec_hash: SpecHash
    operation: Operation
    trigger: Trigger
    attempt: int
    revision: Revision
    requested_at: datetime

    def annotations(self) -> dict[str, str]:
        return {
            ANNOTATION_ENTRY: self.entry_id,
            ANNOTATION_SPEC_HASH: self.spec_hash,
            ANNOTATION_OPERATION: self.operation.value,
            ANNOTATION_TRIGGER: self.trigger.value,
            ANNOTATION_ATTEMPT: str(self.attempt),
            ANNOTATION_REVISION: self.revision,
            ANNOTATION_REQUESTED_AT: self.requested_at.isoformat(),
        }

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> RunMeta | None:
        """The run a Job belongs to, or None when it lacks our annotations (a Job someone
        else labelled like ours is left alone, never reported)."""
        metadata = obj.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        try:
            return cls(
                run_id=RunId(metadata.get("name", "")),
                entry_id=annotations[ANNOTATION_ENTRY],
                spec_hash=annotations[ANNOTATION_SPEC_HASH],
                operation=annotations[ANNOTATION_OPERATION],
                trigger=annotations[ANNOTATION_TRIGGER],
                attempt=int(annotations[ANNOTATION_ATTEMPT]),
                revision=annotations[ANNOTATION_REVISION],
                requested_at=annotations[ANNOTATION_REQUESTED_AT],
            )
        except (KeyError, ValueError, ValidationError):
            return None
