"""The local executor (DESIGN §5): runs as processes on this machine, the embedded default.

Layout of the state dir:

    journal.sqlite          every run: queued, running, finished, acknowledged
    supervisor.sock         the supervisor host's socket (0600); supervisor-host.err its errors
    runs/<run-id>/          run.json (what to run, no secret values), log, result.json, lock
    work/<run-id>/          task/ (the task's files, read-only; the command's folder),
                            repo/ (a stack's repository at the run's revision), home/, tmp/

Each run is supervised by its own detached process, forked by the state dir's supervisor host
(`host.py`, run by `programs/run_supervisor.py`; `runner.py` is what a supervisor does), so a
run survives the daemon: after a restart, `poll` adopts live runs, reports runs that finished
meanwhile, and reports as Interrupted a run whose supervisor vanished without a result. Runs
beyond `max_parallel` wait in the journal and start as slots free up, also after a restart.
`submit` of a known run id never starts a second process.

The journal's unacknowledged rows are also kept in memory: counting slots, polling and
submitting look at what changed (the running runs, the runs submitted), never at every queued
row, and the submits of a cycle are recorded in one transaction (`flush`) before any of their
processes starts. With `on_change`, a thread tells the daemon as soon as a supervisor exits.
Nothing waits for the host to fork a supervisor (its answers are read by a thread), nor for
an acknowledged run's folders to be removed (`sweeper.py`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import assert_never

from loguru import logger

from reconciler.declarations.entries import Entry
from reconciler.executors.base import Workspace
from reconciler.executors.local import history
from reconciler.executors.local.checkout import CheckoutSpec
from reconciler.executors.local.exits import ExitWatch
from reconciler.executors.local.journal import Journal, RunRow
from reconciler.executors.local.runner import (
    CANCEL_FILE,
    LOG_FILE,
    RESULT_FILE,
    SPEC_FILE,
    RunnerSpec,
    write_atomically,
)
from reconciler.executors.local.supervision import SupervisorHost, signal_cancel, stop_orphans
from reconciler.executors.local.sweeper import ASIDE_PREFIX, Sweeper
from reconciler.executors.local.workdir import (
    INHERITED_VARIABLES,
    RunSetupError,
    checkout_credentials,
    read_secret_env,
    remove_tree,
    run_environment,
    write_task_files,
)
from reconciler.kinds.base import Launch, kind_of
from reconciler.kinds.stack.launch import EngineName, runner_invocation
from reconciler.redact import redactor
from reconciler.runs import RunReport, RunRequest
from reconciler.types import EntryId, RunId, RunState, SpecHash

STATE_LOCK_FILE = "executor.lock"
PRIVATE_DIR = 0o700
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _start_failure(err: Exception) -> str:
    """A run's problem, whatever it is, is the run's failure and not the daemon's crash."""
    if isinstance(err, RunSetupError):
        return str(err)
    return f"could not start: {type(err).__name__}: {err}"


class StateDirBusyError(RuntimeError):
    """Another process already runs a local executor over the same state dir."""


@dataclass(frozen=True)
class _Launch:
    argv: list[str]
    cwd: Path
    extra_env: dict[str, str]
    checkout: CheckoutSpec | None = None
    checkout_env: Mapping[str, str] = field(default_factory=dict)
    """Credentials for the checkout alone; the supervisor keeps them from the command."""


class LocalExecutor:
    name = "local"

    def __init__(
        self,
        *,
        state_dir: Path,
        secrets_dir: Path | None = None,
        max_parallel: int = 4,
        workspace: Workspace | None = None,
        engine_bin: str | None = None,
        engine_fallback: EngineName | None = None,
        clock: Callable[[], datetime] = _utcnow,
        kill_grace_seconds: float = 10.0,
        keep_runs: int = 10,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        """`keep_runs`: acknowledged runs (journal rows and logs) kept per entry.
        `base_env`: variables every run starts from; default this process's PATH (so a run
        finds the programs the daemon finds) and locale, and nothing else of its environment."""
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
        self._state_dir = state_dir.absolute()
        self._secrets_dir = secrets_dir.absolute() if secrets_dir else None
        self._max_parallel = max_parallel
        self._workspace = workspace
        self._engine_bin = engine_bin
        self._engine_fallback: EngineName | None = engine_fallback
        self._clock = clock
        self._grace = kill_grace_seconds
        self._keep_runs = keep_runs
        self._base_env = dict(base_env) if base_env is not None else {
            k: os.environ[k] for k in INHERITED_VARIABLES if k in os.environ
        }
        self._lock = threading.RLock()
        self._closed = False
        self._exits: ExitWatch | None = None
        self._callback: Callable[[], None] | None = None
        # The journal's unacknowledged rows, kept here so that counting slots and reporting
        # read no row again: the journal is written through and read only at start.
        self._rows: dict[RunId, RunRow] = {}
        self._running: dict[RunId, None] = {}
        self._pending: dict[RunId, None] = {}
        self._submitted: list[RunRequest] = []
        """Submitted since the last flush: recorded (one transaction) and started by it."""
        self._reports: dict[RunId, RunReport] = {}
        """Reports of rows that are not running: they change only when their row does."""
        for sub in (history.RUNS_DIR, history.WORK_DIR):
            # A run's HOME and TMPDIR (under work/) may receive what it was given as secret;
            # nobody but the daemon's user looks into either.
            folder = self._state_dir / sub
            folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            folder.chmod(PRIVATE_DIR)
        self._state_lock = self._lock_state_dir()
        try:
            self._journal = Journal(self._state_dir)
            for row in self._journal.unacknowledged():
                self._keep(row)
        except BaseException:
            os.close(self._state_lock)
            raise
        self._host = SupervisorHost(self._state_dir, self._base_env, on_pid=self._started,
                                    on_problem=self._changed)
        self._remove_stale_work_dirs()
        self._sweeper = Sweeper()

    def _lock_state_dir(self) -> int:
        path = self._state_dir / STATE_LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirBusyError(
                f"{self._state_dir} is in use by another reconciler process (it holds {path})"
            ) from None
        return fd

    def _remove_stale_work_dirs(self) -> None:
        """Work folders of runs that have ended, and what the last sweeper left aside."""
        for folder in (self._state_dir / history.RUNS_DIR).glob(f"{ASIDE_PREFIX}*"):
            remove_tree(folder)
        for folder in (self._state_dir / history.WORK_DIR).iterdir():
            run = history.run_dir(self._state_dir, RunId(folder.name))
            if (run / RESULT_FILE).exists() or not history.supervised(run):
                remove_tree(folder)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # The protocol.

    def expect(self, entries: Sequence[Entry]) -> None:
        """Every local run is in the journal already: nothing to prepare."""

    def on_change(self, callback: Callable[[], None]) -> bool:
        """`callback` is called (from a thread of the executor's) as soon as a run's
        supervisor exits: the run has ended, and a slot is free; or when a run could not
        start after all."""
        with self._lock:
            if self._exits is not None:
                self._exits.close()
            self._callback = callback
            self._exits = ExitWatch(callback)
            self._settle()
            for run_id in self._running:
                row = self._rows[run_id]
                if row.pid is not None:
                    self._exits.watch(row.pid, row.pid_start)
        return True

    def free_slots(self) -> int:
        with self._lock:
            self._flush()
            self._refresh()
            return max(0, self._max_parallel - len(self._running) - len(self._pending))

    def submit(self, request: RunRequest) -> None:
        """Queued for `flush` (which every other call does first): a cycle's submits are
        recorded in one journal transaction, and their runs started after it."""
        if not _RUN_ID.match(request.run_id):
            raise ValueError(f"run id {request.run_id!r} is not usable as a folder name")
        with self._lock:
            self._submitted.append(request)

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def poll(self) -> Sequence[RunReport]:
        with self._lock:
            self._flush()
            self._refresh()
            return [self._report(row) for row in self._rows.values()]

    def acknowledge(self, run_ids: Sequence[RunId]) -> None:
        with self._lock:
            self._flush()
            finished = [r for r in dict.fromkeys(run_ids)
                        if r in self._rows and self._rows[r].state.finished]
            with self._journal.batch():
                for run_id in self._journal.acknowledge(finished):
                    row = self._forget(run_id)
                    self._sweeper.remove(history.work_dir(self._state_dir, run_id))
                    for old in self._journal.prune(row.entry_id, keep=self._keep_runs):
                        self._sweeper.remove(history.run_dir(self._state_dir, old))
                        self._sweeper.remove(history.work_dir(self._state_dir, old))

    def logs(self, run_id: RunId) -> str:
        if not _RUN_ID.match(run_id):
            return ""
        return history.read_log(history.run_dir(self._state_dir, run_id))

    def cancel(self, run_id: RunId) -> None:
        """Stop a run: its processes get SIGTERM, then SIGKILL after the grace period, and it
        is reported Failed with the message "cancelled" at once."""
        with self._lock:
            self._flush()
            self._settle()
            row = self._rows.get(run_id)
            if row is None or row.state.finished:
                return
            folder = history.run_dir(self._state_dir, run_id)
            if row.state is RunState.RUNNING and folder.is_dir():
                (folder / CANCEL_FILE).touch()
                signal_cancel(row.pid, row.pid_start)
                if not history.supervised(folder):
                    stop_orphans(folder)
            self._finish(row, history.Ending(RunState.FAILED, "cancelled", self._clock()))
            logger.info("run {} cancelled", run_id)

    def close(self) -> None:
        """Release the state dir. Runs keep running; the next executor adopts them."""
        with self._lock:
            if self._closed:
                return
            self._flush()
            self._settle()  # the pids the next executor watches
            self._closed = True
            if self._exits is not None:
                self._exits.close()
            self._host.close()
            self._sweeper.close()
            self._journal.close()
            os.close(self._state_lock)

    def latest(
        self, versions: Mapping[EntryId, SpecHash], known: Collection[RunId] = ()
    ) -> Sequence[RunReport]:
        with self._lock:
            self._flush()
            self._refresh()
            return [self._report(row) for row in self._journal.latest_of(versions, known)]

    def latest_run(self, entry_id: EntryId) -> RunReport | None:
        """The newest run of an entry; see also `history.RunHistory` for a read-only view."""
        with self._lock:
            self._flush()
            self._refresh()
            row = self._journal.latest(entry_id)
            return self._report(row) if row else None

    # Internals: the rows kept in memory.

    def _keep(self, row: RunRow) -> None:
        self._rows[row.run_id] = row
        self._reports.pop(row.run_id, None)
        self._running.pop(row.run_id, None)
        self._pending.pop(row.run_id, None)
        if row.state is RunState.RUNNING:
            self._running[row.run_id] = None
        elif row.state is RunState.PENDING:
            self._pending[row.run_id] = None

    def _forget(self, run_id: RunId) -> RunRow:
        self._reports.pop(run_id, None)
        self._running.pop(run_id, None)
        self._pending.pop(run_id, None)
        return self._rows.pop(run_id)

    def _report(self, row: RunRow) -> RunReport:
        if row.state is RunState.RUNNING:  # its log grows
            return history.report(row, history.run_dir(self._state_dir, row.run_id))
        kept = self._reports.get(row.run_id)
        if kept is None or self._rows.get(row.run_id) is not row:
            kept = history.report(row, history.run_dir(self._state_dir, row.run_id))
            if self._rows.get(row.run_id) is row:
                self._reports[row.run_id] = kept
        return kept

    def _finish(self, row: RunRow, ending: history.Ending) -> None:
        if self._journal.finish(
            row.run_id, ending.state, started_at=ending.started_at,
            finished_at=ending.finished_at, exit_code=ending.exit_code, message=ending.message,
            result=ending.result,
        ):
            self._keep(history.ended(row, ending).model_copy(update={"request": None}))

    # Internals: recording and starting runs.

    def _flush(self) -> None:
        """Record what was submitted and claim the runs that get a slot, in one transaction;
        start them once it is committed (a run is in the journal before it starts)."""
        if not self._submitted:
            return
        submitted, self._submitted = self._submitted, []
        with self._journal.batch():
            self._settle()
            for request in submitted:
                if request.run_id in self._rows:
                    continue  # known and not acknowledged: adopted as it is
                row = self._journal.add(request, submitted_at=self._clock())
                if row is not None:
                    self._keep(row)
                    logger.info("run {} of {} queued", request.run_id, request.entry.id)
                elif self._journal.report_again(request.run_id):
                    # Its record was lost (a reset status branch): report how it ended, as the
                    # Kubernetes executor does for a Job it finds, rather than leave it
                    # unreported.
                    again = self._journal.get(request.run_id)
                    if again is not None:
                        self._keep(again)
                    logger.info("run {} of {} ended before; reporting it again",
                                request.run_id, request.entry.id)
            claimed = self._claim()
        self._start_all(claimed)

    def _refresh(self) -> None:
        """Record the runs that ended and start queued runs into the slots they freed. Looks
        at running runs only (at most `max_parallel`), never at the queue."""
        ended = []
        now = self._clock()
        asking = self._host.asking()
        for run_id in self._running:
            if run_id in asking:
                continue
            row = self._rows[run_id]
            ending = history.observe(row, history.run_dir(self._state_dir, run_id), now=now)
            if ending is not None:
                ended.append((row, ending))
        if not ended and (not self._pending or len(self._running) >= self._max_parallel):
            self._settle()
            return
        with self._journal.batch():
            self._settle()
            for row, ending in ended:
                self._ended(row, ending)
            claimed = self._claim()
        self._start_all(claimed)

    def _ended(self, row: RunRow, ending: history.Ending) -> None:
        folder = history.run_dir(self._state_dir, row.run_id)
        if ending.state is RunState.INTERRUPTED:
            stop_orphans(folder)
        self._finish(row, ending)
        logger.info("run {} of {} ended: {}", row.run_id, row.entry_id, ending.state.value)

    def _claim(self) -> list[RunRow]:
        """Queued runs moved to running, oldest first, as slots allow (inside a batch): if the
        daemon dies from here on, such a run is found without a live supervisor and reported
        as interrupted, never started a second time."""
        claimed = []
        while self._pending and len(self._running) < self._max_parallel:
            row = self._rows[next(iter(self._pending))]
            started_at = self._clock()
            if self._journal.mark_running(row.run_id, started_at=started_at):
                row = row.model_copy(update={"state": RunState.RUNNING,
                                             "started_at": started_at})
                self._keep(row)
                claimed.append(row)
            else:  # not pending in the journal: take what it says
                again = self._journal.get(row.run_id)
                if again is None or again.state is RunState.PENDING:
                    self._pending.pop(row.run_id, None)
                else:
                    self._keep(again)
        return claimed

    def _start_all(self, claimed: Sequence[RunRow]) -> None:
        """Start claimed runs: their folders first, then their supervisors, all asked of the
        host at once. A run that cannot start is recorded Failed."""
        prepared = []
        for row in claimed:
            folder = history.run_dir(self._state_dir, row.run_id)
            if row.request is None:
                self._fail_to_start(row, folder, "could not start: its request was not recorded")
                continue
            try:
                prepared.append((row, folder, self._prepare(row.request, folder)))
            except Exception as err:
                self._fail_to_start(row, folder, _start_failure(err))
        refused = dict(self._host.start_all(
            [(row.run_id, folder, env) for row, folder, env in prepared]))
        for row, folder, _ in prepared:
            outcome = refused.get(row.run_id)
            if outcome is None:
                logger.info("run {} of {} started", row.run_id, row.entry_id)
            else:
                self._fail_to_start(row, folder, _start_failure(outcome))

    def _started(self, pid: int, pid_start: int | None) -> None:
        """From the host's reading thread, without the executor's lock (`close` waits for
        that thread while holding it): the supervisor's exit is watched from now on."""
        exits = self._exits
        if exits is not None:
            exits.watch(pid, pid_start)

    def _changed(self) -> None:
        callback = self._callback
        if callback is not None:
            callback()

    def _settle(self) -> None:
        """Record what the host answered: the supervisors' pids and the runs that could not
        start. Not synced unless a batch around it is: a pid is only a hint (to signal a
        cancellation, to watch for an exit after a restart) and means nothing after the
        machine's crash; a run that could not start and was not recorded so is found without
        a supervisor, and reported interrupted."""
        answers = self._host.answers()
        if not answers:
            return
        with self._journal.batch(durable=False):
            for run_id, outcome in answers:
                row = self._rows.get(RunId(run_id))
                if row is None or row.state is not RunState.RUNNING or outcome is None:
                    continue
                if isinstance(outcome, Exception):
                    folder = history.run_dir(self._state_dir, row.run_id)
                    self._fail_to_start(row, folder, _start_failure(outcome))
                    continue
                self._journal.set_supervisor(row.run_id, pid=outcome.pid,
                                             pid_start=outcome.pid_start)
                self._keep(row.model_copy(update={"pid": outcome.pid,
                                                  "pid_start": outcome.pid_start}))

    def _fail_to_start(self, row: RunRow, folder: Path, message: str) -> None:
        message = redactor(message)
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / LOG_FILE, "a", encoding="utf-8") as log:
                log.write(f"[reconciler] {message}\n")
        self._finish(row, history.Ending(RunState.FAILED, message, self._clock()))
        logger.warning("run {} of {} could not start: {}", row.run_id, row.entry_id, message)

    def _prepare(self, request: RunRequest, folder: Path) -> dict[str, str]:
        """Fresh run and work folders, the run's environment, and its description file."""
        entry = request.entry
        work = history.work_dir(self._state_dir, request.run_id)
        remove_tree(folder)
        remove_tree(work)
        folder.mkdir(parents=True)
        secrets = read_secret_env(entry.spec.secret_env, self._secrets_dir)
        match kind_of(entry.kind).launch:
            case Launch.COMMAND:
                launch = self._task_launch(entry, work)
            case Launch.STACK_RUNNER:
                launch = self._stack_launch(request, work)
            case other:
                assert_never(other)
        env = run_environment(
            request, base=self._base_env, home=work / "home", tmp=work / "tmp",
            extra=launch.extra_env, secrets=secrets,
        )
        spec = RunnerSpec(
            run_id=request.run_id,
            entry_id=entry.id,
            operation=request.operation.value,
            attempt=request.attempt,
            revision=request.revision,
            argv=tuple(launch.argv),
            cwd=str(launch.cwd),
            timeout_seconds=float(entry.timeout_seconds),
            kill_grace_seconds=self._grace,
            secret_env=tuple(sorted(secrets)),
            checkout=launch.checkout,
            checkout_env=tuple(sorted(launch.checkout_env)),
            folders=(str(work / "home"), str(work / "tmp"), str(work / "workspace")),
        )
        # Read once, by the supervisor forked next; the journal is what survives a crash.
        write_atomically(folder / SPEC_FILE, spec.to_json(), durable=False)
        return {**env, **launch.checkout_env}

    def _task_launch(self, entry: Entry, work: Path) -> _Launch:
        """A task runs in its files' folder, or in the workspace (where its `repository` is
        cloned) when it has no files, as on Kubernetes."""
        task = entry.task
        workspace = work / "workspace"  # made by the supervisor, as HOME and TMPDIR are
        if entry.files:
            write_task_files(entry.files, work / "task")
        cwd = work / "task" if entry.files else workspace
        launch = _Launch([*task.command, *task.args], cwd, {})
        if task.repository is None:
            return launch
        credentials, known_hosts = checkout_credentials(task.repository, self._secrets_dir)
        checkout = CheckoutSpec(
            url=task.repository.url, ref=task.repository.ref, dest=str(workspace),
            known_hosts=known_hosts,
        )
        return replace(launch, checkout=checkout, checkout_env=credentials)

    def _stack_launch(self, request: RunRequest, work: Path) -> _Launch:
        if self._workspace is None:
            raise RunSetupError("stacks need the repository's files, and no workspace is set")
        repo = work / "repo"
        try:
            self._workspace.materialize(request.revision, repo)
        except Exception as err:
            raise RunSetupError(
                f"could not check out revision {request.revision}: {err}"
            ) from None
        invocation = runner_invocation(
            request.entry, request.operation, state_dir=self._state_dir,
            engine_bin=self._engine_bin, engine_fallback=self._engine_fallback,
        )
        cwd = (repo / invocation.workdir).resolve()
        if not cwd.is_relative_to(repo.resolve()) or not cwd.is_dir():
            raise RunSetupError(
                f"the stack's folder {invocation.workdir!r} does not exist at revision "
                f"{request.revision}"
            )
        return _Launch(list(invocation.argv), cwd, dict(invocation.env))
