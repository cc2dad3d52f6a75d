"""Reading local runs from the state dir: where each run's files live, how a run that is no
longer supervised ended, and reports built from the journal and the run's log.

Everything here only reads, so `reconciler logs KIND/NAME` can use it next to a running daemon
(or with none), through `RunHistory`.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler.executors.base import run_message
from reconciler.executors.local.journal import JOURNAL_FILE, Journal, RunRow
from reconciler.executors.local.runner import (
    ERRORS_FILE,
    LOCK_FILE,
    LOG_FILE,
    RESULT_FILE,
    Outcome,
    RunnerResult,
)
from reconciler.kinds.base import kind_of
from reconciler.redact import redactor
from reconciler.runs import RunReport, StackResult, read_result, strip_result_lines, tail
from reconciler.types import EntryId, RunId, RunState

RUNS_DIR = "runs"
WORK_DIR = "work"
_TAIL_BYTES = 64 * 1024
_RESULT_BYTES = 1024 * 1024
_STATES = {
    Outcome.EXITED: RunState.SUCCEEDED,
    Outcome.TIMED_OUT: RunState.TIMED_OUT,
    Outcome.CANCELLED: RunState.FAILED,
    Outcome.STOPPED: RunState.INTERRUPTED,
    Outcome.NOT_STARTED: RunState.FAILED,
}
INTERRUPTED_MESSAGE = (
    "interrupted: the run's supervisor is gone and recorded no result (the machine restarted "
    "or the process was killed)"
)


def run_dir(state_dir: Path, run_id: RunId) -> Path:
    return state_dir / RUNS_DIR / run_id


def work_dir(state_dir: Path, run_id: RunId) -> Path:
    return state_dir / WORK_DIR / run_id


def supervised(folder: Path) -> bool:
    """Whether a supervisor holds the run's lock. The lock dies with its holder, however it
    dies, so neither a reused pid nor an unreaped process can make a dead run look alive."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True)
class Ending:
    """How a run that was running has ended."""

    state: RunState
    message: str
    finished_at: datetime
    started_at: datetime | None = None
    exit_code: int | None = None
    result: StackResult | None = None


def observe(row: RunRow, folder: Path, *, now: datetime) -> Ending | None:
    """None while the run's supervisor is alive; otherwise how the run ended."""
    result_file = folder / RESULT_FILE
    if not result_file.exists():
        if supervised(folder):
            return None
        # The supervisor may have written its result and exited between the two checks.
        if not result_file.exists():
            return Ending(RunState.INTERRUPTED, _interrupted_message(folder), finished_at=now)
    outcome = RunnerResult.from_json(result_file.read_text(encoding="utf-8"))
    state = _STATES.get(outcome.outcome, RunState.FAILED)
    if state is RunState.SUCCEEDED and outcome.exit_code != 0:
        state = RunState.FAILED
    result = None
    if kind_of(row.kind).reports_result:
        result = read_result(_read_end(folder / LOG_FILE, _RESULT_BYTES))
    ended_itself = outcome.outcome == Outcome.EXITED
    return Ending(
        state=state,
        message=run_message(state, outcome.message, result) if ended_itself else outcome.message,
        started_at=datetime.fromisoformat(outcome.started_at),
        finished_at=datetime.fromisoformat(outcome.finished_at),
        exit_code=outcome.exit_code,
        result=result,
    )


def _interrupted_message(folder: Path) -> str:
    """Why a supervisor vanished, when it could say so before it died."""
    last = _read_end(folder / ERRORS_FILE, 4096).strip().splitlines()
    return f"{INTERRUPTED_MESSAGE}; it reported: {last[-1]}" if last else INTERRUPTED_MESSAGE


def ended(row: RunRow, ending: Ending) -> RunRow:
    return row.model_copy(update={
        "state": ending.state,
        "message": ending.message,
        "started_at": ending.started_at or row.started_at,
        "finished_at": ending.finished_at,
        "exit_code": ending.exit_code,
        "result": ending.result,
    })


def _read_end(path: Path, size: int) -> str:
    """The end of a file as text, starting at a line boundary."""
    try:
        with open(path, "rb") as raw:
            length = raw.seek(0, os.SEEK_END)
            raw.seek(max(0, length - size))
            data = raw.read()
    except FileNotFoundError:
        return ""
    if length > size:
        data = data[data.find(b"\n") + 1:]
    return data.decode("utf-8", errors="replace")


def read_log(folder: Path) -> str:
    try:
        return redactor((folder / LOG_FILE).read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return ""


def report(row: RunRow, folder: Path) -> RunReport:
    text = _read_end(folder / LOG_FILE, _TAIL_BYTES)
    if kind_of(row.kind).reports_result:
        text = strip_result_lines(text)
    return RunReport(
        run_id=row.run_id,
        entry_id=row.entry_id,
        spec_hash=row.spec_hash,
        operation=row.operation,
        trigger=row.trigger,
        attempt=row.attempt,
        revision=row.revision,
        state=row.state,
        started_at=row.started_at,
        finished_at=row.finished_at,
        exit_code=row.exit_code,
        message=redactor(row.message),
        log_tail=redactor(tail(text.rstrip("\n"))),
        result=row.result,
    )


class RunHistory:
    """Read-only view of a state dir's runs; changes nothing, starts nothing."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._journal: Journal | None = None
        if (state_dir / JOURNAL_FILE).exists():
            self._journal = Journal(state_dir, readonly=True)

    def latest_run(self, entry_id: EntryId) -> RunReport | None:
        """The newest run of an entry, as it stands now."""
        row = self._journal.latest(entry_id) if self._journal else None
        if row is None:
            return None
        folder = run_dir(self._state_dir, row.run_id)
        if row.state is RunState.RUNNING:
            ending = observe(row, folder, now=datetime.now(UTC))
            if ending is not None:
                row = ended(row, ending)
        return report(row, folder)

    def logs(self, run_id: RunId) -> str:
        return read_log(run_dir(self._state_dir, run_id))

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
