"""The local executor's run journal: one SQLite row per run, in `<state-dir>/journal.sqlite`.

The journal is what makes a restart safe. A run's row is written before anything of the run
exists on disk and is updated as the run moves on, so a restarted daemon knows every run it ever
accepted: queued ones are started, live ones adopted, finished ones reported until acknowledged.
Rows hold no secret values: a queued run keeps its request (the entry refers to secrets by name).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reconciler.runs import RunRequest, StackResult
from reconciler.types import EntryId, Kind, Operation, Revision, RunId, RunState, SpecHash, Trigger

JOURNAL_FILE = "journal.sqlite"
_SCHEMA_VERSION = 1
_ACTIVE = (RunState.PENDING.value, RunState.RUNNING.value)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT    NOT NULL UNIQUE,
    entry_id      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    spec_hash     TEXT    NOT NULL,
    operation     TEXT    NOT NULL,
    trigger       TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    revision      TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    requested_at  TEXT    NOT NULL,
    submitted_at  TEXT    NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    exit_code     INTEGER,
    message       TEXT    NOT NULL DEFAULT '',
    result        TEXT    NOT NULL DEFAULT '{}',
    pid           INTEGER,
    pid_start     INTEGER,
    acknowledged  INTEGER NOT NULL DEFAULT 0,
    request       TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_entry ON runs (entry_id, seq);
CREATE INDEX IF NOT EXISTS runs_to_report ON runs (acknowledged, seq);
"""


_LATEST = """
WITH wanted AS (SELECT key AS entry_id, value AS spec_hash FROM json_each(?)),
picked AS (
    SELECT MAX(runs.seq) AS seq FROM runs JOIN wanted
        ON runs.entry_id = wanted.entry_id AND runs.spec_hash = wanted.spec_hash
    WHERE runs.state NOT IN (?, ?)
    GROUP BY runs.entry_id, runs.operation = 'drift'
    UNION
    SELECT MAX(runs.seq) FROM runs JOIN wanted
        ON runs.entry_id = wanted.entry_id AND runs.spec_hash = wanted.spec_hash
    WHERE runs.state = ? AND runs.operation != 'drift'
    GROUP BY runs.entry_id
)
SELECT * FROM runs
WHERE seq IN (SELECT seq FROM picked) AND run_id NOT IN (SELECT value FROM json_each(?))
ORDER BY seq
"""


class JournalError(RuntimeError):
    """The journal cannot be opened or is from an unknown version of reconciler."""


class RunRow(BaseModel):
    """One run as the journal records it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    run_id: RunId
    entry_id: EntryId
    kind: Kind
    spec_hash: SpecHash
    operation: Operation
    trigger: Trigger
    attempt: int
    revision: Revision
    state: RunState
    requested_at: datetime
    submitted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    message: str = ""
    result: StackResult | None = Field(
        default=None, description="What a stack run reported, typed once as its log was read."
    )
    pid: int | None = None
    pid_start: int | None = None
    acknowledged: bool = False
    request: RunRequest | None = None


def _row(values: sqlite3.Row) -> RunRow:
    data = dict(values)
    data["result"] = StackResult.from_result(json.loads(data["result"] or "{}"))
    data["acknowledged"] = bool(data["acknowledged"])
    raw_request = data.pop("request")
    data["request"] = RunRequest.model_validate_json(raw_request) if raw_request else None
    return RunRow.model_validate(data)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class Journal:
    """Thread-safe access to the journal. `readonly=True` never creates or changes anything
    (for `reconciler logs` next to a running daemon). Changes made inside `batch()` are
    committed (and synced) together when it ends."""

    def __init__(self, state_dir: Path, *, readonly: bool = False) -> None:
        path = state_dir / JOURNAL_FILE
        self._lock = threading.RLock()
        try:
            if readonly:
                self._db = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
            else:
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                # FULL: a run the journal forgot after a power loss could be started twice.
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.row_factory = sqlite3.Row
            if not readonly:
                self._migrate()
            self._check_version()
        except sqlite3.Error as err:
            raise JournalError(f"cannot open the run journal {path}: {err}") from err

    def _migrate(self) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute("PRAGMA user_version").fetchone()[0] == 0:
                # One statement at a time: executescript() would commit the open transaction.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version != _SCHEMA_VERSION:
            raise JournalError(
                f"the run journal has schema version {version}; this reconciler reads "
                f"version {_SCHEMA_VERSION}"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def batch(self, *, durable: bool = True) -> Iterator[None]:
        """One transaction, so one sync, for every change made inside; rolled back when the
        block raises. Nested batches join the outer one. `durable=False` commits without a
        sync, for what a crash may lose (the next durable commit syncs it along)."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    self._db.rollback()
                    raise
                self._db.commit()
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[RunRow]:
        with self._lock:
            return [_row(r) for r in self._db.execute(sql, params).fetchall()]

    def _change(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def add(self, request: RunRequest, *, submitted_at: datetime) -> RunRow | None:
        """Record a queued run; its row as recorded. None when the run id is already known
        (nothing changes)."""
        entry = request.entry
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO runs (run_id, entry_id, kind, spec_hash, operation,"
                " trigger, attempt, revision, state, requested_at, submitted_at, request)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (request.run_id, entry.id, entry.kind.value, entry.spec_hash,
                 request.operation.value, request.trigger.value, request.attempt,
                 request.revision, RunState.PENDING.value, _time(request.requested_at),
                 _time(submitted_at), request.model_dump_json()),
            )
            if not cursor.rowcount or cursor.lastrowid is None:
                return None
            seq = cursor.lastrowid
        return RunRow(
            seq=seq, run_id=request.run_id, entry_id=entry.id, kind=entry.kind,
            spec_hash=entry.spec_hash, operation=request.operation, trigger=request.trigger,
            attempt=request.attempt, revision=request.revision, state=RunState.PENDING,
            requested_at=request.requested_at, submitted_at=submitted_at, request=request,
        )

    def get(self, run_id: RunId) -> RunRow | None:
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def unacknowledged(self) -> list[RunRow]:
        return self._query("SELECT * FROM runs WHERE acknowledged = 0 ORDER BY seq")

    def latest(self, entry_id: EntryId) -> RunRow | None:
        rows = self._query(
            "SELECT * FROM runs WHERE entry_id = ? ORDER BY seq DESC LIMIT 1", (entry_id,)
        )
        return rows[0] if rows else None

    def latest_of(
        self, versions: Mapping[EntryId, SpecHash], known: Collection[RunId] = ()
    ) -> list[RunRow]:
        """Of each version (entry → spec hash): its newest finished run, its newest successful
        one and its newest finished drift check, each once, oldest first, leaving out the runs
        in `known`. One query, however many versions (they travel as JSON parameters)."""
        if not versions:
            return []
        return self._query(_LATEST, (
            json.dumps(dict(versions)), *_ACTIVE, RunState.SUCCEEDED.value,
            json.dumps(list(known))))

    def mark_running(self, run_id: RunId, *, started_at: datetime) -> bool:
        """Claim a queued run before anything of it is started: if the daemon dies from here
        on, the run is found without a live supervisor and reported as interrupted, never
        started a second time."""
        return bool(self._change(
            "UPDATE runs SET state = ?, started_at = ? WHERE run_id = ? AND state = ?",
            (RunState.RUNNING.value, _time(started_at), run_id, RunState.PENDING.value),
        ))

    def set_supervisor(self, run_id: RunId, *, pid: int, pid_start: int | None) -> None:
        self._change(
            "UPDATE runs SET pid = ?, pid_start = ? WHERE run_id = ?", (pid, pid_start, run_id)
        )

    def finish(
        self,
        run_id: RunId,
        state: RunState,
        *,
        finished_at: datetime,
        message: str,
        started_at: datetime | None = None,
        exit_code: int | None = None,
        result: StackResult | None = None,
    ) -> bool:
        """Record how an active run ended. A run finishes once: False when it already had."""
        assert state.finished, state
        return bool(self._change(
            "UPDATE runs SET state = ?, started_at = COALESCE(?, started_at), finished_at = ?,"
            " exit_code = ?, message = ?, result = ?, request = NULL"
            " WHERE run_id = ? AND state IN (?, ?)",
            (state.value, _time(started_at), _time(finished_at), exit_code, message,
             json.dumps(result.to_result() if result else {}), run_id, *_ACTIVE),
        ))

    def acknowledge(self, run_ids: Iterable[RunId]) -> list[RunId]:
        """Mark finished runs acknowledged, in one transaction; returns the ids that were."""
        done: list[RunId] = []
        with self.batch():
            for run_id in run_ids:
                if self._change(
                    "UPDATE runs SET acknowledged = 1"
                    " WHERE run_id = ? AND acknowledged = 0 AND state NOT IN (?, ?)",
                    (run_id, *_ACTIVE),
                ):
                    done.append(run_id)
        return done

    def report_again(self, run_id: RunId) -> bool:
        """Undo the acknowledgement of a finished run (submitted again by a daemon that lost
        its record of it). False when it was not acknowledged."""
        return bool(self._change(
            "UPDATE runs SET acknowledged = 0 WHERE run_id = ? AND acknowledged = 1", (run_id,)))

    def prune(self, entry_id: EntryId, *, keep: int) -> list[RunId]:
        """Forget all but the newest `keep` acknowledged runs of an entry; returns the ids
        forgotten, whose files the caller removes."""
        with self.batch():
            old = [
                RunId(r[0]) for r in self._db.execute(
                    "SELECT run_id FROM runs WHERE entry_id = ? AND acknowledged = 1"
                    " ORDER BY seq DESC LIMIT -1 OFFSET ?", (entry_id, keep),
                ).fetchall()
            ]
            self._db.executemany("DELETE FROM runs WHERE run_id = ?", [(r,) for r in old])
        return old
