"""The supervisor of one local run, forked by the state dir's supervisor host (`host.py`).

The local executor has one supervisor per run, detached in its own session, so a run outlives
the daemon that started it: a restarted daemon adopts the run instead of losing or repeating it.
The supervisor starts the command in its own process group, streams its output into the run's
log with secret values masked, stops the whole group at the timeout (SIGTERM, then SIGKILL after
a grace period) or on cancellation, and finally writes `result.json` atomically.

It receives the command's environment (secret values included) as its own environment, never
through a file. It holds the run's lock file for its whole life (the descriptor is handed down
from the executor), which is how the executor tells a live run from one whose supervisor died;
what it writes into that file names the process it runs, for the executor to stop should the
supervisor die.
It sleeps until something happens: output, the command's exit (a pidfd), a signal (the
executor sends `CANCEL_SIGNAL` after writing the cancel file) or the timeout.

Only the standard library is used here: the host that forks every supervisor imports this.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from reconciler.executors.local.checkout import CheckoutSpec, checkout
from reconciler.executors.local.masking import MaskingWriter

SPEC_FILE = "run.json"
LOG_FILE = "log"
RESULT_FILE = "result.json"
LOCK_FILE = "lock"
_COMMAND_BYTES = 64
CANCEL_FILE = "cancel"
ERRORS_FILE = "supervisor.err"

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
_CANCEL_CHECK = 1.0
CANCEL_SIGNAL = signal.SIGUSR1
"""Sent by the executor after it writes the cancel file: the supervisor looks at once."""
_DRAIN_SECONDS = 2.0
"""How long output is still read after the command exited, for a process that left the group
but kept the output pipe open."""


@dataclass(frozen=True)
class RunnerSpec:
    """What to run: `run.json` in the run's folder. Holds no secret values, only the names of
    the variables whose values must be masked."""

    run_id: str
    entry_id: str
    operation: str
    attempt: int
    revision: str
    argv: tuple[str, ...]
    cwd: str
    timeout_seconds: float
    kill_grace_seconds: float
    secret_env: tuple[str, ...] = ()
    checkout: CheckoutSpec | None = None
    """A repository to clone before the command starts (a Task's `repository`)."""
    checkout_env: tuple[str, ...] = ()
    """Variables (credentials) only the checkout sees: removed from the command's environment
    and masked in the log."""
    folders: tuple[str, ...] = ()
    """Folders made before anything runs (the run's HOME, TMPDIR, workspace): here, in the
    supervisor, rather than in the executor, whose every millisecond delays the next run."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunnerSpec:
        data = json.loads(text)
        data["argv"] = tuple(data["argv"])
        data["secret_env"] = tuple(data.get("secret_env", ()))
        data["checkout_env"] = tuple(data.get("checkout_env", ()))
        data["folders"] = tuple(data.get("folders", ()))
        if data.get("checkout") is not None:
            data["checkout"] = CheckoutSpec(**data["checkout"])
        return cls(**data)


class Outcome:
    """How a command ended, as `result.json` says it."""

    EXITED = "exited"
    TIMED_OUT = "timed-out"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    """The supervisor itself was told to stop (SIGTERM): the run did not get to finish."""
    NOT_STARTED = "not-started"


@dataclass(frozen=True)
class RunnerResult:
    """How the command ended: `result.json`, written once, atomically."""

    started_at: str
    finished_at: str
    outcome: str
    exit_code: int | None
    message: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunnerResult:
        data: dict[str, Any] = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def write_atomically(path: Path, text: str, *, durable: bool = True) -> None:
    """Readers see the whole file or none. `durable=False` for a file that only matters while
    the processes it describes live: it need not survive the machine's crash, and skipping the
    sync saves milliseconds per run on a busy disk."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        if durable:
            out.flush()
            os.fsync(out.fileno())
    os.replace(tmp, path)


def process_start(pid: int) -> int | None:
    """The start time of a live process (clock ticks since boot), or None when there is no
    such process or it has exited. With the pid, it names one process: pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Supervisor:
    """Runs the run's steps (a checkout, then the command) one at a time, within one deadline,
    each in its own process group, with output going to the log."""

    def __init__(self, run_dir: Path, spec: RunnerSpec, log: MaskingWriter, wakeup: int,
                 lock: int) -> None:
        self.run_dir = run_dir
        self.lock = lock
        """The run's lock file, held: it also says which process runs now (`command_of`)."""
        self.wakeup = wakeup
        """Read end of the pipe the signal handlers write to (`signal.set_wakeup_fd`)."""
        self.spec = spec
        self.log = log
        self.deadline = time.monotonic() + spec.timeout_seconds
        self.signalled: str | None = None
        self.outcome = Outcome.EXITED
        self.reason = ""

    def on_signal(self, signum: int, _frame: object) -> None:
        self.signalled = signal.Signals(signum).name

    def note(self, text: str) -> None:
        self.log.write(f"[reconciler] {text}\n".encode())

    def launch(
        self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str]
    ) -> subprocess.Popen[bytes] | tuple[int, str]:
        """The started process, or (exit code, message) when it cannot start."""
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        except OSError as err:
            code = EXIT_NOT_FOUND if isinstance(err, FileNotFoundError) else EXIT_NOT_EXECUTABLE
            reason = "command not found" if code == EXIT_NOT_FOUND else "cannot execute command"
            return code, f"{reason}: {argv[0]} ({err.strerror})"
        # Into the lock file, which exists already (a new file costs a millisecond on a busy
        # disk), in place and padded to one size: a reader never sees two texts mixed. Not
        # synced: pids mean nothing after a reboot.
        text = json.dumps({"pid": proc.pid, "pid_start": process_start(proc.pid)})
        os.pwrite(self.lock, text.ljust(_COMMAND_BYTES).encode(), 0)
        return proc

    def _should_stop(self, now: float) -> bool:
        if self.signalled:
            self.outcome = Outcome.STOPPED
            self.reason = f"the run's supervisor received {self.signalled}"
        elif (self.run_dir / CANCEL_FILE).exists():
            self.outcome = Outcome.CANCELLED
            self.reason = "cancelled"
        elif now >= self.deadline:
            self.outcome = Outcome.TIMED_OUT
            self.reason = f"timed out after {_duration(self.spec.timeout_seconds)}"
        else:
            return False
        return True

    @property
    def stopped(self) -> bool:
        return self.outcome != Outcome.EXITED

    def watch(self, proc: subprocess.Popen[bytes]) -> int:
        """Copy the process's output to the log until it ends; stop its group when the run
        is out of time, cancelled or told to stop. Returns its exit status as Popen does.
        Sleeps until something happens: output, the process's exit (its pidfd), a signal
        (the executor signals a cancellation) or the next deadline."""
        assert proc.stdout is not None
        out = proc.stdout.fileno()
        os.set_blocking(out, False)
        exit_fd = os.pidfd_open(proc.pid)
        selector = selectors.DefaultSelector()
        selector.register(out, selectors.EVENT_READ)
        selector.register(exit_fd, selectors.EVENT_READ)
        selector.register(self.wakeup, selectors.EVENT_READ)
        kill_at: float | None = None
        exited_at: float | None = None
        eof = False
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and _exited(proc.pid):
                    exited_at = now
                    selector.unregister(exit_fd)
                    # Whatever the command left behind in its group goes with it.
                    kill_group(proc.pid, signal.SIGKILL)
                elif exited_at is not None and now - exited_at > _DRAIN_SECONDS:
                    break
                elif exited_at is None and kill_at is None and (
                    self.stopped or self._should_stop(now)
                ):
                    self.note(f"{self.reason}: stopping the run's processes")
                    kill_group(proc.pid, signal.SIGTERM)
                    kill_at = now + self.spec.kill_grace_seconds
                elif kill_at is not None and exited_at is None and now >= kill_at:
                    kill_group(proc.pid, signal.SIGKILL)
                if eof and exited_at is not None:
                    break
                for key, _ in selector.select(self._timeout(now, kill_at, exited_at)):
                    if key.fd == out:
                        chunk = _read(out)
                        if chunk is not None:
                            self.log.write(chunk)
                            if not chunk:
                                eof = True
                                selector.unregister(out)
                    elif key.fd == self.wakeup:
                        drain(self.wakeup)
        finally:
            selector.close()
            os.close(exit_fd)
        proc.stdout.close()
        return proc.wait()

    def _timeout(self, now: float, kill_at: float | None, exited_at: float | None) -> float:
        """How long nothing needs doing. The cancel file is also looked at every
        `_CANCEL_CHECK` seconds, should its signal go missing."""
        if exited_at is not None:
            until = exited_at + _DRAIN_SECONDS
        elif kill_at is not None:
            until = kill_at
        else:
            until = min(self.deadline, now + _CANCEL_CHECK)
        return max(0.0, until - now) + 0.001

    def step(self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str]) -> _Ended:
        """Run one process to its end."""
        started = self.launch(argv, cwd=cwd, env=env)
        if isinstance(started, tuple):
            self.note(started[1])
            return _Ended(*started, launched=False)
        try:
            returncode = self.watch(started)
        except BaseException:
            kill_group(started.pid, signal.SIGKILL)
            raise
        code = 128 - returncode if returncode < 0 else returncode
        if self.stopped:
            return _Ended(code, self.reason)
        if returncode < 0:
            return _Ended(code, f"killed by {signal.Signals(-returncode).name} (exit code {code})")
        return _Ended(code, f"exit code {code}")


class _Ended(NamedTuple):
    code: int
    how: str
    launched: bool = True


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{value}{unit}" for value, unit in parts if value)


def _read(fd: int) -> bytes | None:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None


def drain(fd: int) -> None:
    """Read a non-blocking pipe empty (a wake-up pipe: what it held does not matter)."""
    while _read(fd):
        pass


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it: its pid stays reserved, so signalling
    its group afterwards cannot reach an unrelated process."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None


def command_of(run_dir: Path) -> tuple[int, int | None] | None:
    """The process the run's supervisor started last (pid, start time), from its lock file;
    None when it started none."""
    try:
        command = json.loads((run_dir / LOCK_FILE).read_bytes() or b"null")
    except (OSError, ValueError):
        return None
    if not isinstance(command, dict):
        return None
    pid, started = command.get("pid"), command.get("pid_start")
    if not isinstance(pid, int) or not isinstance(started, int | None):
        return None
    return pid, started


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group that may be gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _checkout(supervisor: _Supervisor, spec: CheckoutSpec, env: dict[str, str]) -> str | None:
    scratch = Path(spec.dest).parent / f".checkout-{os.getpid()}"
    scratch.mkdir(mode=0o700, exist_ok=True)
    try:
        return checkout(
            spec,
            env=env,
            step=lambda argv, step_env: supervisor.step(argv, cwd=spec.dest, env=step_env)[:2],
            stopped=lambda: supervisor.stopped,
            note=supervisor.note,
            scratch=scratch,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _command(supervisor: _Supervisor, started: str, environ: dict[str, str]) -> RunnerResult:
    ended = supervisor.step(supervisor.spec.argv, cwd=supervisor.spec.cwd, env=environ)
    outcome = supervisor.outcome
    if outcome == Outcome.EXITED and not ended.launched:
        outcome = Outcome.NOT_STARTED
    return RunnerResult(started, _now(), outcome, ended.code, ended.how)


def run(run_dir: Path, lock: int) -> RunnerResult:
    spec = RunnerSpec.from_json((run_dir / SPEC_FILE).read_text(encoding="utf-8"))
    environ = dict(os.environ)
    secrets = [environ[name] for name in spec.secret_env if name in environ]
    private = {name: environ.pop(name) for name in spec.checkout_env if name in environ}
    started = _now()
    for folder in spec.folders:
        os.makedirs(folder, exist_ok=True)  # a supervisor forked again finds them made
    wakeup, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w)
    with open(run_dir / LOG_FILE, "ab") as raw:
        log = MaskingWriter(raw, secrets + list(private.values()))
        supervisor = _Supervisor(run_dir, spec, log, wakeup, lock)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, supervisor.on_signal)
        # Only to wake the watch loop (through the wakeup fd): it then finds the cancel file.
        signal.signal(CANCEL_SIGNAL, lambda *_: None)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        failure = None
        if spec.checkout is not None:
            failure = _checkout(supervisor, spec.checkout, {**_checkout_base(environ), **private})
        if supervisor.stopped:
            result = RunnerResult(started, _now(), supervisor.outcome, None, supervisor.reason)
        elif failure is not None:
            supervisor.note(failure)
            result = RunnerResult(started, _now(), Outcome.NOT_STARTED, None, failure)
        else:
            result = _command(supervisor, started, environ)
        log.close()
    return result


def _checkout_base(environ: Mapping[str, str]) -> dict[str, str]:
    """The checkout runs with the basics only: the task's own variables (GIT_DIR, say) are
    for its command."""
    return {k: environ[k] for k in ("PATH", "LANG", "TZ", "TMPDIR") if k in environ}


def supervise(run_dir: Path, lock: int) -> None:
    """Run the run described in `run_dir` and write its `result.json`, also when the
    supervisor itself fails: a result is what tells the executor the run is over. `lock`: the
    run's lock file, held."""
    try:
        result = run(run_dir, lock)
    except Exception as err:
        # Reported as the run's failure rather than left as a supervisor that vanished.
        now = _now()
        message = f"the run's supervisor failed: {type(err).__name__}: {err}"
        write_atomically(
            run_dir / RESULT_FILE,
            RunnerResult(now, now, Outcome.NOT_STARTED, None, message).to_json(),
        )
        raise
    write_atomically(run_dir / RESULT_FILE, result.to_json())
