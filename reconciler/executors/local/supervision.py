"""Starting a run's supervisor through the state dir's supervisor host (`host.py`), signalling
it, and cleaning up after one that died."""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from reconciler.executors.local.history import supervised
from reconciler.executors.local.host import (
    HOST_ERRORS_FILE,
    MAX_MESSAGE,
    SOCKET_FILE,
    decode,
    encode,
)
from reconciler.executors.local.runner import (
    CANCEL_SIGNAL,
    LOCK_FILE,
    RESULT_FILE,
    command_of,
    kill_group,
    process_start,
)
from reconciler.executors.local.workdir import RunSetupError

# The host is started isolated from the daemon's PYTHON* variables; the package's own folder
# is put first on its path instead.
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from reconciler.programs.run_supervisor import main; sys.exit(main(sys.argv[2:]))"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
_BACKLOG = 64


@dataclass
class _Asked:
    """A start request the host has not answered yet."""

    key: str
    folder: Path
    env: dict[str, str]
    again: bool = False
    """Sent a second time, after the host it was first sent to hung up without an answer."""


class Started(NamedTuple):
    pid: int
    pid_start: int | None
    """The supervisor's start time (`process_start`), None when it has exited already."""


Answer = tuple[str, "Started | Exception | None"]
"""A run's key and what became of its start: its supervisor, why it did not start, or None
when a host died after it forked the supervisor (which then goes on, unannounced)."""


class SupervisorHost:
    """The executor's side of the host: one connection, opened when the first run starts; the
    host is started when there is none listening (none yet, or the last one died or exited).

    Starting does not wait for the host: requests are sent, and a thread reads the answers as
    they come (the host answers in order), hands each pid to `on_pid` at once (to watch for
    the supervisor's exit) and keeps the answers for `answers`. Waiting for each fork's answer
    cost the executor milliseconds per run, during which no other run could start."""

    def __init__(self, state_dir: Path, env: Mapping[str, str], *,
                 on_pid: Callable[[int, int | None], None],
                 on_problem: Callable[[], None]) -> None:
        """`env`: the host's own environment; each run gets its own. `on_pid(pid, start)` and
        `on_problem()` (a run could not start, or the host hung up before it answered: look at
        `answers`) are called from the reading thread."""
        self._state_dir = state_dir
        self._env = dict(env)
        self._on_pid = on_pid
        self._on_problem = on_problem
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._asked: deque[_Asked] = deque()
        self._unanswered: list[_Asked] = []
        self._answers: list[Answer] = []
        self._closing = False
        self._process: subprocess.Popen[bytes] | None = None
        # Socket addresses are limited to 108 bytes; a state dir may be deeper than that.
        self._dir = os.open(state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._address = f"/proc/self/fd/{self._dir}/{SOCKET_FILE}"

    def start_all(self, runs: Sequence[tuple[str, Path, Mapping[str, str]]]
                  ) -> list[tuple[str, Exception]]:
        """Ask for the supervisor of each run (key, folder, environment: secret values reach
        it only this way). Returns at once, with the runs that could not even be asked for
        (their answers); the others are answered through `answers`."""
        refused: list[tuple[str, Exception]] = []
        for key, folder, env in runs:
            try:
                self._send(_Asked(key, folder, dict(env)))
            except RunSetupError as err:
                refused.append((key, err))
        return refused

    def answers(self) -> list[Answer]:
        """What the host answered since the last call. Requests a host left unanswered when it
        hung up are sent once more, through a new host, unless their supervisor was forked
        already; they are answered later."""
        with self._lock:
            unanswered, self._unanswered = self._unanswered, []
            answers, self._answers = self._answers, []
        for asked in unanswered:
            # Our copy of the lock is closed: only a supervisor forked from it can hold it.
            if supervised(asked.folder) or (asked.folder / RESULT_FILE).exists():
                answers.append((asked.key, None))
            elif asked.again:
                answers.append((asked.key, RunSetupError(
                    "the supervisor host exited before it answered")))
            else:
                try:
                    self._send(replace(asked, again=True))
                except Exception as err:
                    answers.append((asked.key, err))
        return answers

    def asking(self) -> set[str]:
        """The runs whose start is not settled yet (asked, or answered since the last
        `answers`): their lock may be in flight, or released by a host that died before it
        read the request, so it says nothing yet about whether they are supervised."""
        with self._lock:
            return ({a.key for a in self._asked} | {a.key for a in self._unanswered}
                    | {key for key, _ in self._answers})

    def _send(self, asked: _Asked) -> None:
        message = encode({"folder": str(asked.folder), "env": asked.env})
        lock = _locked(asked.folder / LOCK_FILE)
        try:
            with self._lock:
                conn = self._connect()
                self._asked.append(asked)
                try:
                    _send(conn, message, lock)
                except RunSetupError:
                    self._asked.pop()
                    raise
                except OSError:
                    pass  # the host is gone: the reader finds it hung up, and says so
        finally:
            os.close(lock)  # in flight, the host holds it

    def _read(self, conn: socket.socket) -> None:
        while True:
            reply = _receive(conn)
            if not reply:
                break
            pid = _pid(reply)
            answer = Started(pid, process_start(pid)) if isinstance(pid, int) else pid
            with self._lock:
                self._answers.append((self._asked.popleft().key, answer))
            if isinstance(answer, Started):
                self._on_pid(*answer)
            else:
                self._on_problem()
        with self._lock:
            lost = bool(self._asked) and not self._closing
            self._unanswered.extend(self._asked)
            self._asked.clear()
            if self._conn is conn:
                self._conn = None
            conn.close()
        if lost:
            self._on_problem()

    def _connect(self) -> socket.socket:
        """The connection (with `_lock` held); a new one, with its reader, when there is none."""
        if self._conn is not None:
            return self._conn
        conn = _client()
        try:
            conn.connect(self._address)
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
            conn = self._spawn()
        if self._reader is not None:
            self._reader.join()  # it let go of its connection already
        self._conn = conn
        self._reader = threading.Thread(target=self._read, args=(conn,), name="run-starts",
                                        daemon=True)
        self._reader.start()
        return conn

    def _spawn(self) -> socket.socket:
        """A new host, over a listening socket made here: connecting to it works at once, and
        the host's first look finds this connection waiting."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET_FILE, dir_fd=self._dir)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            listener.bind(self._address)
            os.chmod(SOCKET_FILE, 0o600, dir_fd=self._dir)  # before listen: nobody got in
            listener.listen(_BACKLOG)
            conn = _client()
            conn.connect(self._address)
            self._reap()
            with open(self._state_dir / HOST_ERRORS_FILE, "ab") as errors:
                self._process = subprocess.Popen(
                    [sys.executable, "-I", "-c", _BOOTSTRAP, _PACKAGE_ROOT,
                     str(listener.fileno())],
                    cwd=self._state_dir,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,
                    pass_fds=(listener.fileno(),),
                )
        finally:
            listener.close()
        return conn

    def _reap(self) -> None:
        """The host this executor started and that has exited since is waited for."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None

    def close(self) -> None:
        """Hang up; the host goes on while runs it started do, also the ones it was asked
        for and has not answered yet (they are found supervised by the next executor)."""
        with self._lock:
            self._closing = True
            if self._conn is not None:
                # Wakes the reader; what was sent is still read by the host.
                with contextlib.suppress(OSError):
                    self._conn.shutdown(socket.SHUT_RD)
            reader = self._reader
        if reader is not None:
            reader.join()
        self._reap()
        os.close(self._dir)


def _send(conn: socket.socket, message: bytes, lock: int) -> None:
    try:
        conn.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  array.array("i", [lock]))])
    except OSError as err:
        if err.errno == errno.EMSGSIZE:
            raise RunSetupError(
                "the run's environment is too large to hand to its supervisor") from None
        raise


def _receive(conn: socket.socket) -> bytes:
    """An answer; b"" when the host hung up (or `close` shut the connection)."""
    try:
        return conn.recv(65536)
    except OSError:
        return b""


def _pid(reply: bytes) -> int | RunSetupError:
    answer = decode(reply)
    pid = answer.get("pid")
    if not isinstance(pid, int):
        return RunSetupError(str(answer.get("error", "the supervisor host refused the run")))
    return pid


def _client() -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE)
    return conn


def _locked(path: Path) -> int:
    """The run's lock file, locked: before the supervisor exists, and handed down to it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def signal_cancel(pid: int | None, pid_start: int | None) -> None:
    """Tell a supervisor to look at its cancel file now; the pid is trusted only while it
    still names the process that was started."""
    if pid is not None and pid_start is not None and process_start(pid) == pid_start:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, CANCEL_SIGNAL)


def stop_orphans(folder: Path) -> None:
    """A supervisor that died may leave its command running: stop that command's process
    group, so that a retry never runs next to it. The pid is trusted only while it still
    names the process that was started (same start time)."""
    command = command_of(folder)
    if command is not None and command[1] is not None and process_start(command[0]) == command[1]:
        kill_group(command[0], signal.SIGKILL)
