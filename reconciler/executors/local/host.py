"""The supervisor host: one long-lived process per state dir that forks the supervisor of every
local run (`programs/run_supervisor.py` runs it; `supervision.py` starts and talks to it).

Forking from a process that has `runner.py` imported already costs a millisecond, where a fresh
interpreter per run cost 150 ms of CPU. The host is started detached, in its own session, and
each supervisor it forks gets a session of its own: a run outlives the daemon that asked for it
and the host that forked it, and a restarted daemon connects to the host again (or starts a new
one when it died).

It listens on a Unix socket in the state dir (mode 0600, and only its own user's connections
are served). A request is one datagram: the run's folder and environment, with the run's lock
file descriptor attached (SCM_RIGHTS). The executor locked it before asking, the forked
supervisor inherits it and the host closes its copy at once: the lock is what says a run is
supervised, and there is no moment when a started run looks unsupervised. Secret values travel
in that datagram only, never through a file or argv. The answer is the supervisor's pid.

The host exits once it has no supervisor left and no connection open.
Like the runner, this module imports the standard library only.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from reconciler.executors.local.runner import CANCEL_SIGNAL, ERRORS_FILE, drain, supervise

SOCKET_FILE = "supervisor.sock"
HOST_ERRORS_FILE = "supervisor-host.err"
MAX_MESSAGE = 1 << 20
"""The largest request read. What can be sent is bounded by the socket's send buffer as well
(`net.core.wmem_max`, 208 KiB by default): a run's environment must fit."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def decode(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message


class _Host:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.clients: dict[int, socket.socket] = {}
        self.children: set[int] = set()
        self.selector = selectors.DefaultSelector()
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ)

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # Until a supervisor sets its own handler, a cancellation signal must not kill it.
        signal.signal(CANCEL_SIGNAL, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        while True:
            for key, _ in self.selector.select(None if self.clients or self.children else 0):
                if key.fileobj is self.listener:
                    self.accept()
                elif key.fd == self.wakeup_r:
                    drain(self.wakeup_r)
                elif isinstance(key.fileobj, socket.socket):
                    self.answer(key.fileobj)
            self.reap()
            if not self.clients and not self.children and not self.accept():
                return

    def accept(self) -> bool:
        """Take the connections waiting; False when there were none."""
        took = False
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return took
            took = True
            uid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
            if uid != os.getuid():
                conn.close()
                continue
            conn.setblocking(True)
            self.clients[conn.fileno()] = conn
            self.selector.register(conn, selectors.EVENT_READ)

    def answer(self, conn: socket.socket) -> None:
        fds = array.array("i")
        try:
            data, ancillary, _, _ = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(fds.itemsize))
        except OSError:
            data, ancillary = b"", []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        try:
            if not data:
                self.selector.unregister(conn)
                del self.clients[conn.fileno()]
                conn.close()
                return
            reply = self.start(decode(data), list(fds))
            with contextlib.suppress(OSError):  # the asker is gone; its run goes on
                conn.sendall(encode(reply))
        finally:
            for fd in fds:
                os.close(fd)

    def start(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        folder, env = request.get("folder"), request.get("env")
        if not isinstance(folder, str) or not isinstance(env, dict) or len(fds) != 1:
            return {"error": "malformed request"}
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as err:
            return {"error": f"cannot fork a supervisor: {err.strerror}"}
        if pid == 0:
            self.become_supervisor(Path(folder), {str(k): str(v) for k, v in env.items()}, fds[0])
        self.children.add(pid)
        return {"pid": pid}

    def become_supervisor(self, folder: Path, env: dict[str, str], lock: int) -> NoReturn:
        """In the forked child: drop everything of the host, become the run's supervisor."""
        code = 1
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for conn in self.clients.values():
                conn.close()
            self.listener.close()
            self.selector.close()
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            null = os.open(os.devnull, os.O_RDWR)
            errors = os.open(folder / ERRORS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                             0o600)
            for target, source in ((0, null), (1, null), (2, errors)):
                os.dup2(source, target)
            os.close(null)
            os.close(errors)
            os.set_inheritable(lock, False)  # held by the supervisor, not by its commands
            os.chdir(folder)
            os.environ.clear()
            os.environ.update(env)
            supervise(folder, lock)
            code = 0
        except BaseException:
            with contextlib.suppress(Exception):
                traceback.print_exc()
                sys.stderr.flush()
        os._exit(code)

    def reap(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            self.children.discard(pid)


def serve(listener: socket.socket) -> None:
    """Serve start requests on `listener` until no run and no connection is left."""
    _Host(listener).serve()
