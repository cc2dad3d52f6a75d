"""Stack state on disk is private to the daemon's user.

A local stack's state (`terraform.tfstate`, its `.backup`, the lock info) holds every attribute
of every resource in plain text, secrets included; so do plan files and the module's
`.terraform/` folder (the backend's settings). The runner creates all of them with umask 077
(files 0600, folders 0700) and tightens what an earlier version left readable.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

PRIVATE_UMASK = 0o077


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Files and folders created meanwhile (by the runner and the engine it starts, which
    inherits the umask) are readable by their owner alone."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def make_private(folder: Path) -> None:
    """Create `folder` (and its parent, the state dir's `stacks/`) as 0700, and take group
    and other permissions away from everything already in it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (folder.parent, folder):
        path.chmod(0o700)
    for root, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & PRIVATE_UMASK:
                path.chmod(stat.S_IMODE(mode) & ~PRIVATE_UMASK)
