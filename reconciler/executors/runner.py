"""The supervisor of one local run: `python -m reconciler.executors.runner RUN_DIR`.

The local executor starts one supervisor per run, detached in its own session, so a run outlives
the daemon that started it: a restarted daemon adopts the run instead of losing or repeating it.
The supervisor starts the command in its own process group, streams its output into the run's
log with secret values masked, stops the whole group at the timeout (SIGTERM, then SIGKILL after
a grace period) or on cancellation, and finally writes `result.json` atomically.

It receives the command's environment (secret values included) as its own environment, never
through a file. It holds the run's lock file for its whole life (the descriptor is inherited
from the executor), which is how the executor tells a live run from one whose supervisor died.

Only the standard library is used here: one of these starts for every run.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from reconciler.redact import MASK, MIN_SECRET_LENGTH

SPEC_FILE = "run.json"
LOG_FILE = "log"
RESULT_FILE = "result.json"
LOCK_FILE = "lock"
COMMAND_FILE = "command.json"
CANCEL_FILE = "cancel"
ERRORS_FILE = "supervisor.err"

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
_TICK = 0.1
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunnerSpec:
        data = json.loads(text)
        data["argv"] = tuple(data["argv"])
        data["secret_env"] = tuple(data.get("secret_env", ()))
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


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
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


class MaskingWriter:
    """Writes a byte stream as UTF-8 text with secret values masked, as it arrives.

    Output is written at once, except an ending that could be the start of a secret split
    across reads: that waits for the next read (or the end)."""

    def __init__(self, out: BinaryIO, secrets: Iterable[str]) -> None:
        values = {
            candidate
            for value in secrets
            for candidate in (value, value.strip())
            if len(candidate) >= MIN_SECRET_LENGTH
        }
        self._values = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, self._values))) if values else None
        self._out = out
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _undecided(self, text: str) -> int:
        """Length of the longest ending of `text` that begins some secret."""
        longest = max(map(len, self._values), default=1) - 1
        for size in range(min(longest, len(text)), 0, -1):
            ending = text[-size:]
            if any(value.startswith(ending) for value in self._values):
                return size
        return 0

    def write(self, data: bytes, *, final: bool = False) -> None:
        text = self._pending + self._decoder.decode(data, final=final)
        if self._pattern is None:
            cut = len(text)
            emit = text
        else:
            cut = len(text) if final else len(text) - self._undecided(text)
            for match in self._pattern.finditer(text):
                if match.start() >= cut:
                    break
                if match.end() > cut:
                    cut = match.end()  # a whole secret straddles the cut: emit it masked
                    break
            emit = self._pattern.sub(MASK, text[:cut])
        self._pending = text[cut:]
        if emit:
            self._out.write(emit.encode("utf-8"))
            self._out.flush()

    def close(self) -> None:
        self.write(b"", final=True)


class _Supervisor:
    def __init__(self, run_dir: Path, spec: RunnerSpec, log: MaskingWriter) -> None:
        self.run_dir = run_dir
        self.spec = spec
        self.log = log
        self.signalled: str | None = None
        self.outcome = Outcome.EXITED
        self.reason = ""

    def on_signal(self, signum: int, _frame: object) -> None:
        self.signalled = signal.Signals(signum).name

    def note(self, text: str) -> None:
        self.log.write(f"[reconciler] {text}\n".encode())

    def start(self, started: str) -> subprocess.Popen[bytes] | RunnerResult:
        try:
            proc = subprocess.Popen(
                self.spec.argv,
                cwd=self.spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        except OSError as err:
            code = EXIT_NOT_FOUND if isinstance(err, FileNotFoundError) else EXIT_NOT_EXECUTABLE
            reason = "command not found" if code == EXIT_NOT_FOUND else "cannot execute command"
            message = f"{reason}: {self.spec.argv[0]} ({err.strerror})"
            self.note(message)
            return RunnerResult(started, _now(), Outcome.NOT_STARTED, code, message)
        write_atomically(
            self.run_dir / COMMAND_FILE,
            json.dumps({"pid": proc.pid, "pid_start": process_start(proc.pid)}),
        )
        return proc

    def _should_stop(self, now: float, deadline: float) -> bool:
        if self.signalled:
            self.outcome = Outcome.STOPPED
            self.reason = f"the run's supervisor received {self.signalled}"
        elif (self.run_dir / CANCEL_FILE).exists():
            self.outcome = Outcome.CANCELLED
            self.reason = "cancelled"
        elif now >= deadline:
            self.outcome = Outcome.TIMED_OUT
            self.reason = f"timed out after {_duration(self.spec.timeout_seconds)}"
        else:
            return False
        return True

    def supervise(self, proc: subprocess.Popen[bytes], started: str) -> RunnerResult:
        assert proc.stdout is not None
        out = proc.stdout.fileno()
        os.set_blocking(out, False)
        selector = selectors.DefaultSelector()
        selector.register(out, selectors.EVENT_READ)
        deadline = time.monotonic() + self.spec.timeout_seconds
        kill_at: float | None = None
        exited_at: float | None = None
        eof = False
        while not (eof and exited_at is not None):
            now = time.monotonic()
            if exited_at is None and _exited(proc.pid):
                exited_at = now
                # Whatever the command left behind in its group goes with it.
                _kill_group(proc.pid, signal.SIGKILL)
            elif exited_at is not None and now - exited_at > _DRAIN_SECONDS:
                break
            elif exited_at is None and kill_at is None and self._should_stop(now, deadline):
                self.note(f"{self.reason}: stopping the run's processes")
                _kill_group(proc.pid, signal.SIGTERM)
                kill_at = now + self.spec.kill_grace_seconds
            elif kill_at is not None and exited_at is None and now >= kill_at:
                _kill_group(proc.pid, signal.SIGKILL)
            if eof:
                time.sleep(_TICK)
                continue
            for _ in selector.select(_TICK):
                chunk = _read(out)
                if chunk is not None:
                    self.log.write(chunk)
                    eof = not chunk
        selector.close()
        proc.stdout.close()
        return self._result(proc.wait(), started)

    def _result(self, returncode: int, started: str) -> RunnerResult:
        code = 128 - returncode if returncode < 0 else returncode
        if self.outcome != Outcome.EXITED:
            message = self.reason
        elif returncode < 0:
            message = f"killed by {signal.Signals(-returncode).name} (exit code {code})"
        else:
            message = f"exit code {code}"
        return RunnerResult(started, _now(), self.outcome, code, message)


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


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it: its pid stays reserved, so signalling
    its group afterwards cannot reach an unrelated process."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run(run_dir: Path) -> RunnerResult:
    spec = RunnerSpec.from_json((run_dir / SPEC_FILE).read_text(encoding="utf-8"))
    secrets = [os.environ[name] for name in spec.secret_env if name in os.environ]
    with open(run_dir / LOG_FILE, "ab") as raw:
        log = MaskingWriter(raw, secrets)
        supervisor = _Supervisor(run_dir, spec, log)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, supervisor.on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        started = _now()
        started_or_failed = supervisor.start(started)
        if isinstance(started_or_failed, RunnerResult):
            result = started_or_failed
        else:
            try:
                result = supervisor.supervise(started_or_failed, started)
            except BaseException:
                _kill_group(started_or_failed.pid, signal.SIGKILL)
                raise
        log.close()
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m reconciler.executors.runner RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    try:
        result = run(run_dir)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
