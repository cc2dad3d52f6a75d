"""What tests ask about processes they started, read from /proc as the kernel reports it."""

from __future__ import annotations

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
