"""The policy in the daemon: a denied entry is Invalid with the located reason in its status
file and never runs, while the others run; once the declaration asks for nothing denied, it
runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.commands.wiring import policy_check
from reconciler.daemon import Daemon
from reconciler.declarations.loader import DeclarationLoader
from reconciler.executors.local.executor import LocalExecutor
from reconciler.policy.apply import PolicyLoader
from reconciler.settings import Settings
from reconciler.source.gitsource import GitSource
from tests.daemon.conftest import World, task
from tests.e2e.harness import status_file
from tests.support.gitservers import GitDaemon, GitUser


class PolicedWorld(World):
    """The daemon as `run` builds it: its loader applies the policy of its settings."""

    settings = Settings(repo="unused", executor="local")

    def _daemon(self) -> Daemon:
        source = GitSource(self.url, self.state, status_branch=self.status_branch)
        executor = LocalExecutor(state_dir=self.state, workspace=source, max_parallel=4,
                                 clock=self.clock)
        check = policy_check(self.settings, token_file=self.state / "no-token")
        return Daemon(source=source, loader=PolicyLoader(DeclarationLoader(), check),
                      executor=executor, metrics=self.metrics, clock=self.clock)


def test_a_denied_entry_is_invalid_with_its_reason_while_others_run(
    tmp_path: Path, git_daemon: GitDaemon, git_user: Callable[..., GitUser]
) -> None:
    steal = task("steal", serviceAccountName="reconciler")
    w = PolicedWorld(tmp_path, git_daemon, git_user, {
        "ok.yaml": task("ok"), "steal.yaml": steal,
    })
    try:
        w.settle()
        assert w.status("task/ok")["phase"] == "Succeeded"
        denied = w.status("task/steal")
        line = next(i for i, x in enumerate(steal.splitlines(), 1) if "serviceAccountName" in x)
        assert denied["phase"] == "Invalid"
        assert denied["message"].startswith(
            f"steal.yaml:{line}:27: spec.serviceAccountName: denied by policy: service account "
            "reconciler is reserved for the daemon")
        assert "lastRun" not in denied
        errors = status_file(w.bare, "status/errors.yaml", branch=w.status_branch)
        assert "denied by policy" in str(errors)
        w.push({"steal.yaml": task("steal")}, "Ask for no service account")
        w.settle()
        assert w.status("task/steal")["phase"] == "Succeeded"
    finally:
        w.daemon.executor.close()
