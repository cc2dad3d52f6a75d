"""Removing the folders of acknowledged runs off the daemon's path.

A folder is renamed aside at once (a rename costs microseconds, and the run's name is free
again at once), and removed by a thread: removing a run's folders costs milliseconds on a busy
disk, which every cycle that acknowledges runs would otherwise wait for. What is left aside
when the process stops is removed by the next executor, as every work folder of a run that
has ended is.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from pathlib import Path

from reconciler.executors.local.workdir import remove_tree

ASIDE_PREFIX = ".removed-"
"""Run ids start with a letter or digit: no run's folder is named so."""


class Sweeper:
    def __init__(self) -> None:
        self._names = itertools.count()
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="run-folders", daemon=True)
        self._thread.start()

    def remove(self, path: Path) -> None:
        aside = path.with_name(f"{ASIDE_PREFIX}{os.getpid()}-{next(self._names)}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        self._queue.put(aside)

    def _loop(self) -> None:
        while (path := self._queue.get()) is not None:
            remove_tree(path)

    def close(self) -> None:
        """Stop once the folder being removed is; the others stay for the next executor."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join()
