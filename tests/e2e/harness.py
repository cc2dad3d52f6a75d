"""The daemon as a user meets it: a subprocess reconciling a real remote, read through Git."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.support.gitservers import git, git_env
from tests.support.waiting import wait_until

STATUS_BRANCH = "reconciler-status"
_DAEMONS = itertools.count(1)
_SERVING = re.compile(r"serving metrics and webhooks on (http://[^\s\"]+)")


def task_yaml(name: str, command: Sequence[str], **spec: Any) -> str:
    doc = {
        "apiVersion": "reconciler.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name},
        "spec": {"command": list(command), **spec},
    }
    return json.dumps(doc, indent=2) + "\n"  # JSON is YAML, and quoting is unambiguous


class Daemon:
    """`reconciler run` in a subprocess; stopped (and reaped) on exit."""

    def __init__(self, repo_url: str, state_dir: Path, *extra: str,
                 interval: str = "1s", env: dict[str, str] | None = None,
                 log_level: str = "DEBUG") -> None:
        self.log_path = state_dir.parent / f"daemon-{next(_DAEMONS)}.log"
        # Port 0: the daemon binds a free port itself and logs it, so no other process can
        # take the port between choosing and binding it.
        self.args = [
            sys.executable, "-m", "reconciler", "run", "--repo", repo_url,
            "--state-dir", str(state_dir), "--interval", interval,
            "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", log_level,
            # Stacks declare OpenTofu; this machine may have only Terraform.
            "--engine-fallback", "terraform", *extra,
        ]
        self.env = {**git_env(), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._started_at = 0
        """Where in the log the current process's lines begin."""

    @property
    def url(self) -> str:
        """The daemon's HTTP address, as it logs it once bound."""
        def served() -> str | None:
            text = self.log_path.read_bytes()[self._started_at:].decode(errors="replace")
            for line in text.splitlines():
                found = _SERVING.search(line)
                if found:
                    return found.group(1)
            assert self.process is not None
            assert self.process.poll() is None, f"the daemon exited\n{text}"
            return None

        address: str = wait_until(served, timeout=60, what="the daemon's HTTP address",
                                  details=self.log_text)
        return address

    def start(self) -> Daemon:
        self._started_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the daemon alone: runs it started keep going, as after a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"message": line, "raw": True})
        return lines

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def status_file(bare: Path, path: str, branch: str = STATUS_BRANCH) -> dict[str, Any] | None:
    """A status file as it is on the remote now, parsed; None when absent."""
    try:
        text = git("--git-dir", bare, "show", f"{branch}:{path}")
    except RuntimeError:  # no such branch or file yet
        return None
    loaded = YAML(typ="safe").load(text)
    return loaded if isinstance(loaded, dict) else None


def wait_for_status(bare: Path, path: str, predicate: Callable[[dict[str, Any]], bool], *,
                    daemon: Daemon | None = None, timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        data = status_file(bare, path)
        return data if data is not None and predicate(data) else None

    return wait_until(check, timeout=timeout, what=f"{path} on {STATUS_BRANCH}",
                      details=lambda: f"last: {status_file(bare, path)}\n"
                      + (daemon.log_text()[-4000:] if daemon else ""))
