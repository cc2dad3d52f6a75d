"""Runs as the daemon and the executors exchange them: typed requests and reports.

Below `records` (which folds a report into a status record) and above `declarations`; the
executor port (`executors/base.py`) speaks in these.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reconciler.declarations.entries import Entry
from reconciler.types import EntryId, Operation, Revision, RunId, RunState, SpecHash, Trigger

LOG_TAIL_LINES = 40
RESULT_MARKER = "::reconciler-result::"
"""A stack run prints one line `::reconciler-result:: {json}` last; executors parse it from the
log so the same runner program reports through local files and Kubernetes pod logs alike."""


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
    result: dict[str, Any] = Field(
        default_factory=dict, description="What a stack run reported (plan summary, engine)."
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


def strip_result_lines(log: str) -> str:
    return "\n".join(x for x in log.splitlines() if not x.startswith(RESULT_MARKER))


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])

