"""What tests ask about processes they started, read from /proc as the kernel reports it."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited: a zombie (exited, not yet reaped by
    its parent) or a dead one counts as gone, as a signal-0 probe could not tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name in parentheses may hold spaces and ')'; the state follows the last ')'.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` holds `path` open: a sign that it has got as far as using it,
    where its output says nothing yet."""
    target = path.resolve()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if Path(os.readlink(descriptor)) == target:
                return True
        except OSError:  # closed meanwhile
            continue
    return False
