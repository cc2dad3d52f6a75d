"""A daemon restarted on its state dir restores its status records and its declarations from
the snapshots there, and gets what reading the status branch and loading the commit give;
damaged snapshots, or a commit pushed while it was down, change nothing but the time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler import status
from reconciler.daemon.core import Daemon
from reconciler.declarations.loader import DeclarationLoader
from reconciler.executors.local.executor import LocalExecutor
from reconciler.source.gitsource import GitSource
from reconciler.types import Revision
from tests.daemon.conftest import World, task
from tests.support.gitservers import GitDaemon, GitUser


class CachedWorld(World):
    """The world's daemon with its caches in the state dir, as `reconciler run` builds it."""

    def _daemon(self) -> Daemon:
        source = GitSource(self.url, self.state, status_branch=self.status_branch)
        executor = LocalExecutor(state_dir=self.state, workspace=source, max_parallel=4,
                                 clock=self.clock, secrets_dir=self.state.parent / "secrets")
        loader = DeclarationLoader(cache_file=self.state / "declarations.cache")
        return Daemon(source=source, loader=loader, executor=executor, metrics=self.metrics,
                      clock=self.clock, state_dir=self.state)


def _as_read_back(world: World) -> tuple[dict[Any, Any], Any]:
    """What a daemon without caches restores: the status branch parsed, the commit loaded."""
    files = world.daemon.source.read_status()
    revision = world.daemon.revision
    assert revision is not None
    fresh = DeclarationLoader().load(world.daemon.source.files(revision), revision)
    return status.parse(files)[0], fresh


def _restart(world: World) -> Daemon:
    world.restart()
    world.daemon.cycle()
    return world.daemon


def test_restarts_restore_from_the_state_dir(tmp_path: Path, git_daemon: GitDaemon,
                                              git_user: Callable[..., GitUser]) -> None:
    world = CachedWorld(tmp_path, git_daemon, git_user, {
        "ok.yaml": task("ok"), "bad.yaml": task("bad", "import sys; sys.exit(3)"),
        "more.yaml": task("more", "print('more')", dependsOn=["task/ok"]),
    })
    try:
        world.settle()
        world.daemon.cycle()  # the cycle after: what a restart reads is saved
        assert (world.state / "declarations.snapshot").exists()
        _restart(world)
        assert world.daemon.status_cache.parsed == 3  # the first start had read no records
        world.daemon.cycle()
        daemon = _restart(world)
        assert daemon.status_cache.parsed == 0
        assert daemon.tracking.loader.stats.validated == 0  # type: ignore[attr-defined]
        records, desired = _as_read_back(world)
        daemon.restore()
        assert daemon.records == records
        assert daemon.desired == desired
        assert world.status("task/bad")["phase"] == "Failed"

        # Down: a commit is pushed, and both snapshots are damaged.
        pushed = world.push({"ok.yaml": task("ok", "print('changed')"), "bad.yaml": None})
        for name in ("declarations.snapshot", "status.snapshot"):
            snap = world.state / name
            snap.write_bytes(snap.read_bytes()[:-10])
        daemon = _restart(world)
        assert daemon.status_cache.parsed == 3
        assert daemon.revision == Revision(pushed)
        records, desired = _as_read_back(world)
        assert daemon.desired == desired
        assert "task/bad" not in daemon.desired.entries
        world.settle()
        world.daemon.cycle()
        daemon = _restart(world)
        # The records the runs since changed are parsed; the others were read before.
        assert 0 < daemon.status_cache.parsed <= 3
        daemon.cycle()
        daemon = _restart(world)
        assert daemon.status_cache.parsed == 0
        records, desired = _as_read_back(world)
        daemon.restore()
        assert daemon.records == records
        assert daemon.desired == desired
    finally:
        world.daemon.executor.close()
