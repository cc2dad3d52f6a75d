"""The shared vocabulary: identifiers, phases, triggers and operations.

One place defines every word the stages exchange, so a phase or a trigger is never a free-text
string that one module spells differently from another.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

API_VERSION = "reconciler.io/v1alpha1"

EntryId = NewType("EntryId", str)
"""`task/NAME` or `stack/NAME`: an entry's identity across commits."""

Revision = NewType("Revision", str)
"""A full hexadecimal Git commit id."""

SpecHash = NewType("SpecHash", str)
"""SHA-256 (hex) of an entry's effective spec plus the Git ids of the files it uses."""

RunId = NewType("RunId", str)
"""A run's identity, stable across restarts: derived from entry, spec hash, operation, attempt."""


class Kind(StrEnum):
    TASK = "Task"
    STACK = "Stack"
    DEFAULTS = "Defaults"

    @property
    def prefix(self) -> str:
        """The lower-case word used in entry ids and `dependsOn` (`task`, `stack`)."""
        return self.value.lower()

    @property
    def entries(self) -> bool:
        """Whether its documents are entries (an id, runs, a status file); a Defaults document
        only configures the entries of the others."""
        return self is not Kind.DEFAULTS

    @property
    def plural(self) -> str:
        """`tasks`, `stacks`: the status folder of its records, its count in `validate`."""
        if not self.entries:
            raise ValueError("Defaults are not entries: they have no status")
        return f"{self.prefix}s"


ENTRY_KINDS: tuple[Kind, ...] = tuple(k for k in Kind if k.entries)
"""The kinds of entries, in the order they are listed (task, stack)."""


def entry_id(kind: Kind, name: str) -> EntryId:
    return EntryId(f"{kind.prefix}/{name}")


_BY_PREFIX = {kind.prefix: kind for kind in ENTRY_KINDS}


def split_entry_id(value: EntryId | str) -> tuple[Kind, str]:
    """`task/x` → (Kind.TASK, "x"). Raises ValueError on anything else."""
    prefix, sep, name = value.partition("/")
    if not sep or prefix not in _BY_PREFIX or not name:
        expected = " or ".join(f"{kind.prefix}/NAME" for kind in ENTRY_KINDS)
        raise ValueError(f"expected {expected}, got {value!r}")
    return _BY_PREFIX[prefix], name


class Phase(StrEnum):
    """An entry's phase as written to its status file (DESIGN §3)."""

    PENDING = "Pending"
    BLOCKED = "Blocked"
    RUNNING = "Running"
    RETRYING = "Retrying"
    """The last attempt failed and another is due: not `Failed`, which pages someone."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    """The retries are used up (or a destroy failed)."""
    TIMED_OUT = "TimedOut"
    INVALID = "Invalid"
    SUSPENDED = "Suspended"
    ORPHANED = "Orphaned"
    PLANNED = "Planned"
    AWAITING_APPROVAL = "AwaitingApproval"
    """A stack under `apply: approve` planned a change; it applies once that plan's id is
    committed as `spec.approvedPlan`."""
    WAITING = "Waiting"
    """A run is due but no window allows it now; it starts when the next one opens."""


class DriftState(StrEnum):
    IN_SYNC = "InSync"
    DRIFTED = "Drifted"
    ERROR = "Error"
    UNKNOWN = "Unknown"


class Trigger(StrEnum):
    """Why a run was started; a label of `reconciler_runs_total`."""

    NEW = "new"
    CHANGED = "changed"
    RETRY = "retry"
    SCHEDULE = "schedule"
    DEPENDENCY = "dependency"
    DRIFT = "drift"
    REMEDIATE = "remediate"
    PRUNE = "prune"
    MANUAL = "manual"
    REQUESTED = "requested"
    """A new value of the `reconciler.io/run-requested` (or `plan-requested`) annotation."""


class Operation(StrEnum):
    """What a run does. Tasks only `run`; stacks `apply`, `plan`, `drift` or `destroy`."""

    RUN = "run"
    APPLY = "apply"
    PLAN = "plan"
    DRIFT = "drift"
    DESTROY = "destroy"


class RunState(StrEnum):
    """A run's state as an executor reports it."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    INTERRUPTED = "Interrupted"

    @property
    def finished(self) -> bool:
        return self not in (RunState.PENDING, RunState.RUNNING)
