"""Starting a run's supervisor (`programs/run_supervisor.py`, over `runner.py`), and cleaning up
after one that died."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from reconciler.executors.local.runner import (
    COMMAND_FILE,
    ERRORS_FILE,
    LOCK_FILE,
    kill_group,
    process_start,
)

# The supervisor is started isolated from the run's PYTHON* variables, which belong to the
# command; the package's own folder is put first on its path instead.
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from reconciler.programs.run_supervisor import main; sys.exit(main(sys.argv[2:]))"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


def start_supervisor(folder: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start the supervisor of the run described in `folder`, detached in its own session,
    with `env` as the run's environment (secret values reach it only this way)."""
    lock = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        # Locked before the supervisor exists and handed down to it: there is no moment when
        # a started run looks unsupervised.
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(folder / ERRORS_FILE, "ab") as errors:
            return subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOTSTRAP, _PACKAGE_ROOT, str(folder)],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
                pass_fds=(lock,),
            )
    finally:
        os.close(lock)


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
