"""Telling the daemon at once that a run's supervisor exited: one thread waiting on a pidfd per
supervisor, which calls back as each one exits."""

from __future__ import annotations

import os
import selectors
import threading
from collections.abc import Callable

from reconciler.executors.local.runner import drain, process_start


class ExitWatch:
    """Calls `callback` (from its own thread) whenever a watched process has exited."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._added: list[int] = []
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="run-exits", daemon=True)
        self._thread.start()

    def watch(self, pid: int, pid_start: int | None) -> None:
        """Watch process `pid` (started at `pid_start`, when known): a process that is gone
        already, or whose pid names another process by now, is reported at once."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._callback()
            return
        # Checked after the pidfd is open: from then on the pid cannot be reused under it.
        if pid_start is not None and process_start(pid) != pid_start:
            os.close(fd)
            self._callback()
            return
        with self._lock:  # called from other threads too: `close` must not come between
            if self._closed:
                os.close(fd)
                return
            self._added.append(fd)
            os.write(self._wake_w, b"+")

    def _loop(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.fd == self._wake_r:
                    drain(self._wake_r)
                    with self._lock:
                        if self._closed:
                            return
                        added, self._added = self._added, []
                    for fd in added:
                        self._selector.register(fd, selectors.EVENT_READ)
                else:
                    self._selector.unregister(key.fd)
                    os.close(key.fd)
                    self._callback()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            os.close(key.fd)
        self._selector.close()
        os.close(self._wake_w)
        for fd in self._added:
            os.close(fd)
