"""Starting a run's supervisor through the state dir's supervisor host (`host.py`), signalling
it, and cleaning up after one that died."""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

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
    COMMAND_FILE,
    LOCK_FILE,
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


class _HostGone(Exception):
    """The host closed the connection before it answered (it died, or was exiting)."""


class SupervisorHost:
    """The executor's side of the host: one connection, opened when the first run starts; the
    host is started when there is none listening (none yet, or the last one died or exited)."""

    def __init__(self, state_dir: Path, env: Mapping[str, str]) -> None:
        """`env`: the host's own environment; each run gets its own."""
        self._state_dir = state_dir
        self._env = dict(env)
        self._conn: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        # Socket addresses are limited to 108 bytes; a state dir may be deeper than that.
        self._dir = os.open(state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._address = f"/proc/self/fd/{self._dir}/{SOCKET_FILE}"

    def start_all(
        self, runs: Sequence[tuple[Path, Mapping[str, str]]]
    ) -> list[int | Exception | None]:
        """Start the supervisor of each run described in a folder, with its environment as
        the run's (secret values reach it only this way). For each, in order: its pid, None
        when the host died after it forked the supervisor (which then goes on, unannounced),
        or why it could not start. Every request is sent before the first answer is read:
        the host forks while the next ones are on their way."""
        if not runs:
            return []
        outcomes: list[int | Exception | None] = [_HostGone() for _ in runs]
        asked: list[int] = []
        locks: list[int] = []
        try:
            conn = self._connect()
            for index, (folder, env) in enumerate(runs):
                try:
                    locks.append(_locked(folder / LOCK_FILE))
                    _send(conn, encode({"folder": str(folder), "env": dict(env)}), locks[-1])
                except RunSetupError as err:
                    outcomes[index] = err
                    continue
                asked.append(index)
            for index in asked:
                reply = _receive(conn)
                if not reply:
                    break
                outcomes[index] = _pid(reply)
        except OSError:
            pass  # the host is gone: what it did not answer is looked at below
        finally:
            for lock in locks:
                os.close(lock)
        self._start_unanswered(runs, outcomes)
        return outcomes

    def _start_unanswered(self, runs: Sequence[tuple[Path, Mapping[str, str]]],
                          outcomes: list[int | Exception | None]) -> None:
        """The runs the host did not answer for (it died, or was exiting) are started one by
        one, through a new host, unless their supervisor was forked already."""
        if any(isinstance(outcome, _HostGone) for outcome in outcomes):
            self._disconnect()
        for index, outcome in enumerate(outcomes):
            if not isinstance(outcome, _HostGone):
                continue
            folder, env = runs[index]
            # Our copy of the lock is closed: only a supervisor forked from it can hold it.
            if supervised(folder):
                outcomes[index] = None
                continue
            try:
                outcomes[index] = self._start_one(folder, env)
            except Exception as err:
                outcomes[index] = err

    def _start_one(self, folder: Path, env: Mapping[str, str]) -> int | None:
        message = encode({"folder": str(folder), "env": dict(env)})
        for retry in (False, True):
            lock = _locked(folder / LOCK_FILE)
            try:
                return self._ask(message, lock)
            except _HostGone:
                if retry:
                    raise RunSetupError("the supervisor host exited before it answered") from None
            finally:
                os.close(lock)
            if supervised(folder):
                return None
        raise AssertionError("unreachable")

    def _ask(self, message: bytes, lock: int) -> int:
        conn = self._connect()
        try:
            _send(conn, message, lock)
        except OSError:
            reply = b""
        else:
            reply = _receive(conn)
        if not reply:
            self._disconnect()
            raise _HostGone
        pid = _pid(reply)
        if isinstance(pid, RunSetupError):
            raise pid
        return pid

    def _connect(self) -> socket.socket:
        if self._conn is not None:
            return self._conn
        conn = _client()
        try:
            conn.connect(self._address)
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
            conn = self._spawn()
        self._conn = conn
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

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _reap(self) -> None:
        """The host this executor started and that has exited since is waited for."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None

    def close(self) -> None:
        """Hang up; the host goes on while runs it started do."""
        self._disconnect()
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
    """An answer; b"" when the host hung up."""
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
    try:
        command = json.loads((folder / COMMAND_FILE).read_text())
    except (OSError, ValueError):
        return
    pid, started = command.get("pid"), command.get("pid_start")
    if isinstance(pid, int) and started is not None and process_start(pid) == started:
        kill_group(pid, signal.SIGKILL)
