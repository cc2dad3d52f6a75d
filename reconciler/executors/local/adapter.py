"""The local executor as the command line finds it (`executors/registry.py`): its flags, its
settings, how it is built and where `reconciler logs` finds its runs.

Loaded for every `--help`, so it imports no more than the flags need; the executor, its journal
and its history are imported when used.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from reconciler.executors.base import Executor, Workspace
from reconciler.executors.registry import (
    EngineFallback,
    ExecutorConfigError,
    FlagAdder,
    FlagSet,
    LatestLog,
    LeaderElector,
)
from reconciler.settings import Settings
from reconciler.types import EntryId


class LocalSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    secrets_dir: Path | None = None
    tofu_bin: str | None = None
    engine_fallback: EngineFallback | None = None


class LocalAdapter:
    name = "local"
    places_in_namespaces = False
    elects_leaders = False

    def add_flags(self, parser: argparse.ArgumentParser, flag: FlagAdder, where: FlagSet) -> None:
        if where is FlagSet.DAEMON_FILES:
            flag(parser, "--secrets-dir",
                 help="Local executor: secretEnv reads <dir>/<secret>/<key>.")
        elif where is FlagSet.DAEMON_RUNS:
            flag(parser, "--tofu-bin",
                 help="Local executor: the engine program, which must be the engine a stack "
                 "declares (or the --engine-fallback); default: the declared one's tofu or "
                 "terraform on PATH.")

    def settings(self, args: argparse.Namespace) -> LocalSettings:
        return LocalSettings(secrets_dir=Path(args.secrets_dir) if args.secrets_dir else None,
                             tofu_bin=args.tofu_bin or None,
                             engine_fallback=args.engine_fallback or None)

    def policy_namespace(self, settings: Settings) -> str:
        return "default"  # runs are processes here: no namespace rule applies to them

    def daemon_secrets(self, settings: Settings) -> tuple[str, ...]:
        return ()

    def build(self, settings: Settings, workspace: Workspace) -> Executor:
        from reconciler.executors.local.executor import LocalExecutor, StateDirBusyError

        own = settings.of(LocalSettings)
        try:
            return LocalExecutor(
                state_dir=settings.state_dir,
                secrets_dir=own.secrets_dir,
                max_parallel=settings.max_parallel,
                workspace=workspace,
                engine_bin=own.tofu_bin,
                engine_fallback=own.engine_fallback,
            )
        except StateDirBusyError as err:
            raise ExecutorConfigError(str(err)) from None

    def elector(self, settings: Settings, on_change: Callable[[bool], None]) -> LeaderElector:
        raise ExecutorConfigError("the local executor has no leader election")

    def foreign_state(self, settings: Settings) -> str | None:
        """A plan against a state dir that is not the daemon's compares the stack with an
        empty state and would publish a false drift result, so it is refused, not guessed."""
        from reconciler.executors.local.journal import JOURNAL_FILE

        if (settings.state_dir / JOURNAL_FILE).is_file():
            return None
        return (f"--state-dir {settings.state_dir} is not a daemon's state dir (it has no "
                f"{JOURNAL_FILE}); pass the state dir of the daemon that reconciles this "
                "repository, while that daemon is stopped")

    def latest_log(self, entry: EntryId, args: argparse.Namespace) -> LatestLog:
        state_dir = Path(args.state_dir)
        if not state_dir.is_dir():
            raise ExecutorConfigError(
                f"--state-dir {state_dir} does not exist; pass the state dir of the daemon "
                "that ran it")
        return LatestLog(_log(entry, state_dir), f"state dir {state_dir}")


def _log(entry: EntryId, state_dir: Path) -> str | None:
    from reconciler.executors.local.history import RunHistory

    history = RunHistory(state_dir)
    try:
        report = history.latest_run(entry)
        if report is None:
            return None
        header = (f"# {report.run_id}: {report.operation.value} {report.state.value}"
                  f" (attempt {report.attempt}, commit {report.revision[:12]})\n")
        return header + history.logs(report.run_id)
    finally:
        history.close()


ADAPTER = LocalAdapter()
