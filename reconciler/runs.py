"""Runs as the daemon and the executors exchange them: typed requests and reports.

Below `records` (which folds a report into a status record) and above `declarations`; the
executor port (`executors/base.py`) speaks in these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from reconciler.declarations.entries import Entry
from reconciler.types import (
    DriftState,
    EntryId,
    Operation,
    Revision,
    RunId,
    RunState,
    SpecHash,
    Trigger,
)

LOG_TAIL_LINES = 40
RESULT_MARKER = "::reconciler-result::"
"""A stack run prints one line `::reconciler-result:: {json}` last; executors parse it from the
log so the same runner program reports through local files and Kubernetes pod logs alike."""


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Camel(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel,
        populate_by_name=True, serialize_by_alias=True,
    )


class PlanChanges(_Camel):
    """A plan's or apply's counts, as a stack run reports them and a status file keeps them
    (`changes: {add, change, destroy}`)."""

    # extra="ignore": status files and result lines written by a newer version may count more.
    model_config = ConfigDict(extra="ignore")

    add: int = Field(default=0, ge=0)
    change: int = Field(default=0, ge=0)
    destroy: int = Field(default=0, ge=0)

    @property
    def total(self) -> int:
        return self.add + self.change + self.destroy

    def __str__(self) -> str:
        return f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"


class StackResult(_Camel):
    """What a stack run reports on its `::reconciler-result::` line."""

    engine: str = Field(default="", description="opentofu or terraform.")
    version: str = Field(default="", description="The engine's version, e.g. 1.10.6.")
    operation: Operation
    changes: PlanChanges = Field(default_factory=PlanChanges)
    addresses: tuple[str, ...] = Field(default=(), description="Changed resource addresses.")
    drift: DriftState | None = Field(default=None, description="Set by drift runs only.")
    applied: bool = Field(default=False, description="True when a plan was applied.")
    error: str | None = Field(default=None, description="Why the run failed (redacted).")

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> StackResult | None:
        """The typed result of a parsed result line, or None when there is none (the runner
        died before reporting) or it is not one. Unknown keys (a newer runner) are ignored."""
        known = {f.alias or n for n, f in cls.model_fields.items()} | set(cls.model_fields)
        try:
            return cls.model_validate({k: v for k, v in result.items() if k in known})
        except ValidationError:
            return None

    def to_result(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class RunRequest(_Value):
    """Everything an executor needs to start one run; built by the daemon from a plan action."""

    run_id: RunId
    entry: Entry
    operation: Operation
    trigger: Trigger
    attempt: int = Field(ge=1)
    revision: Revision
    requested_at: datetime


class RunReport(_Value):
    """A run as an executor sees it now. Finished runs are reported until acknowledged."""

    run_id: RunId
    entry_id: EntryId
    spec_hash: SpecHash
    operation: Operation
    trigger: Trigger
    attempt: int
    revision: Revision
    state: RunState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    message: str = ""
    log_tail: str = Field(default="", description="Last lines of output, secrets redacted.")
    result: StackResult | None = Field(
        default=None, description="What a stack run reported (plan summary, engine); None for "
        "a task, or a stack run that ended before reporting."
    )


def run_id_for(entry: Entry, operation: Operation, attempt: int, *, salt: str = "") -> RunId:
    """Deterministic, so a restarted daemon (or a second replica) finds the run it started
    instead of starting a duplicate. `salt` separates runs of the same version and attempt
    started for another reason (a cron fire time, a dependency's run)."""
    digest = hashlib.sha256(
        f"{entry.id}\0{entry.spec_hash}\0{operation}\0{attempt}\0{salt}".encode()
    ).hexdigest()
    # At most 40 + 1 + 3 + 1 + 10 = 55 characters: fits a Kubernetes name and label value.
    return RunId(f"{entry.name}-{operation.value[0]}{attempt}-{digest[:10]}")


def parse_result_line(log: str) -> dict[str, Any]:
    """The last `::reconciler-result::` JSON object in a log, or {}."""
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                value = json.loads(line[len(RESULT_MARKER):])
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def read_result(log: str) -> StackResult | None:
    """The typed result a stack run's log ends with, or None: read once, where an executor
    reads the log."""
    return StackResult.from_result(parse_result_line(log))


def strip_result_lines(log: str) -> str:
    return "\n".join(x for x in log.splitlines() if not x.startswith(RESULT_MARKER))


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])

