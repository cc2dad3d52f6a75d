"""The daemon in-process with its real parts (Git source, loader, local executor, engine) and a
clock the test moves, so crons and backoffs are tested without waiting for them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.daemon.core import Daemon
from reconciler.daemon.cycle import CycleResult
from reconciler.declarations.loader import DeclarationLoader
from reconciler.executors.local.executor import LocalExecutor
from reconciler.metrics import Metrics
from reconciler.source.gitsource import GitSource
from tests.e2e.harness import status_file
from tests.support.gitservers import GitDaemon, GitUser, make_bare_remote
from tests.support.waiting import wait_until


class Clock:
    """Starts at the real time: run start and end times come from the runner's real clock,
    and backoffs are measured from them. Tests only ever move it forward."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


PY = sys.executable


def declaration(kind: str, name: str, **spec: Any) -> str:
    return json.dumps({"apiVersion": "reconciler.io/v1alpha1", "kind": kind,
                       "metadata": {"name": name}, "spec": spec}, indent=2) + "\n"


def task(name: str, code: str = "print('ok')", **spec: object) -> str:
    """A Task running `code` with this Python."""
    return declaration("Task", name, command=[PY, "-c", code], **spec)


class World:
    """A remote, a user pushing to it, and a daemon reconciling it."""

    def __init__(self, root: Path, server: GitDaemon, user_factory: Callable[..., GitUser],
                 files: dict[str, str], *, status_branch: str = "reconciler-status") -> None:
        self.bare = make_bare_remote(root / "served" / "world.git", files)
        self.url = server.url("world.git")
        self.user = user_factory(self.url)
        self.state = root / "state"
        self.clock = Clock()
        self.metrics = Metrics(process_metrics=False)
        self.status_branch = status_branch
        self.daemon = self._daemon()

    def _daemon(self) -> Daemon:
        source = GitSource(self.url, self.state, status_branch=self.status_branch)
        # The declared OpenTofu may be missing here: the Terraform of this machine stands in.
        executor = LocalExecutor(state_dir=self.state, workspace=source, max_parallel=4,
                                 clock=self.clock, secrets_dir=self.state.parent / "secrets",
                                 engine_fallback="terraform")
        return Daemon(source=source, loader=DeclarationLoader(), executor=executor,
                      metrics=self.metrics, clock=self.clock)

    def restart(self) -> None:
        self.daemon.executor.close()
        self.daemon = self._daemon()

    def push(self, files: dict[str, str | None], message: str = "Change") -> str:
        commit = self.user.commit(files, message)  # type: ignore[arg-type]
        self.user.push()
        return commit

    def settle(self, *, timeout: float = 60) -> CycleResult:
        """Cycle until nothing runs and nothing more starts (retries due later excluded)."""
        results = [self.daemon.cycle(fetch=True)]

        def idle() -> CycleResult | None:
            last = results[-1]
            if not (last.started or last.active):
                return last
            results.append(self.daemon.cycle(fetch=False))
            return None

        result = wait_until(idle, timeout=timeout, interval=0.1,
                            what="no run active and none started",
                            details=lambda: str(results[-1]))
        assert not result.errors, result.errors
        return result

    def status(self, entry: str) -> dict[str, Any]:
        kind, name = entry.split("/")
        data = status_file(self.bare, f"status/{kind}s/{name}.yaml", branch=self.status_branch)
        assert data is not None, f"no status file for {entry}"
        return data

    def metric(self, name: str, /, **labels: str) -> float | None:
        """The value of one series of the daemon's metrics, or None when it is not exported."""
        body, _ = self.metrics.render()
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return float(sample.value)
        return None

    def status_head(self) -> str:
        from tests.support.gitservers import branch_head

        return branch_head(self.bare, self.status_branch) or ""


@pytest.fixture
def world(tmp_path: Path, git_daemon: GitDaemon,
          git_user: Callable[..., GitUser]) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(files: dict[str, str], **kw: Any) -> World:
        w = World(tmp_path, git_daemon, git_user, files, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.daemon.executor.close()
