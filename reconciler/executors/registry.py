"""Executors by name, and what each adapter offers the command line beyond the `Executor` port.

Every adapter is one line of `ADAPTERS`: its name (the value of `--executor`) and where its
`ExecutorAdapter` lives, as `"module:attribute"`. That module declares the adapter's flags and
its settings model and imports nothing heavy: `--help` lists every adapter's flags, so the
parser loads them all, while the executor itself (the Kubernetes client, the journal) is
imported only when chosen. Nothing outside the adapters and this table compares executor names.
A flag that every executor takes (`--engine-fallback`: stacks run under either) is declared
here once, since argparse refuses a flag declared twice; each adapter reads it into its own
settings.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel

from reconciler.executors.base import Executor, Workspace
from reconciler.ports import Elector
from reconciler.settings import Settings
from reconciler.types import EntryId

ADAPTERS: dict[str, str] = {
    "local": "reconciler.executors.local.adapter:ADAPTER",
    "kubernetes": "reconciler.executors.kubernetes.adapter:ADAPTER",
}
DEFAULT = "local"
EngineFallback = Literal["opentofu", "terraform"]
"""A value of `--engine-fallback`: one of the engines a stack may declare."""


class ExecutorConfigError(Exception):
    """A setting of an executor that cannot work; one line that names the flag."""


class FlagSet(StrEnum):
    """Where in a subcommand's flags an adapter's own flags go (`--help` lists them there)."""

    DAEMON_FILES = "daemon-files"
    """`run` and `drift`, beside `--state-dir`: files of this machine the executor reads."""
    DAEMON_RUNS = "daemon-runs"
    """`run` and `drift`, after `--executor` and `--max-parallel`: where and how runs go."""
    POLICY = "policy"
    """`validate`, after `--executor`: the daemon's flags that policy rules depend on."""
    LOGS = "logs"
    """`logs`, after `--executor`: where the executor's runs are found."""


class FlagAdder(Protocol):
    """`cli._flag`: `add_argument` with the `RECONCILER_<FLAG>` default and its help suffix."""

    def __call__(self, parser: argparse.ArgumentParser, *names: str, **kwargs: Any) -> None: ...


class LeaderElector(Elector, Protocol):
    """An elector as `run` starts it."""

    identity: str

    def start(self) -> None: ...


@dataclass(frozen=True)
class LatestLog:
    """The log of an entry's newest run (None: no run is recorded), and where it was looked
    for, for the message when there is none."""

    text: str | None
    where: str


class ExecutorAdapter(Protocol):
    """What the command line needs of an executor besides the `Executor` port."""

    name: str
    places_in_namespaces: bool
    """Runs go to Kubernetes namespaces, so the policy's namespace rules and limits apply."""
    elects_leaders: bool
    """`--leader-elect` works with this executor (`elector`)."""

    def add_flags(self, parser: argparse.ArgumentParser, flag: FlagAdder, where: FlagSet) -> None:
        """Add this adapter's flags of `where` (none is fine)."""
        ...

    def settings(self, args: argparse.Namespace) -> BaseModel:
        """This adapter's settings model from its `FlagSet.DAEMON_*` flags. Raises
        pydantic's ValidationError, or ExecutorConfigError."""
        ...

    def policy_namespace(self, settings: Settings) -> str:
        """The daemon's own namespace, as the policy's namespace rule sees it."""
        ...

    def daemon_secrets(self, settings: Settings) -> tuple[str, ...]:
        """The daemon's own Secrets these settings name, which no declaration may use."""
        ...

    def build(self, settings: Settings, workspace: Workspace) -> Executor:
        """The daemon's executor. Raises ExecutorConfigError."""
        ...

    def elector(self, settings: Settings, on_change: Callable[[bool], None]) -> LeaderElector:
        """The daemon's leader elector, not started (only when `elects_leaders`). Raises
        ExecutorConfigError."""
        ...

    def foreign_state(self, settings: Settings) -> str | None:
        """Why a one-off run with these settings (`reconciler drift`) would not see the
        daemon's runs and stack state, or None."""
        ...

    def latest_log(self, entry: EntryId, args: argparse.Namespace) -> LatestLog:
        """`reconciler logs`: the newest run of `entry` and its log, from this adapter's
        `FlagSet.LOGS` flags (and `--state-dir`). Raises ExecutorConfigError."""
        ...


def names() -> list[str]:
    return list(ADAPTERS)


@cache
def adapter(name: str) -> ExecutorAdapter:
    """The adapter called `name`. Raises LookupError for a name no adapter has."""
    if name not in ADAPTERS:
        raise LookupError(f"unknown executor {name!r} (one of {', '.join(ADAPTERS)})")
    module, _, attribute = ADAPTERS[name].partition(":")
    found: ExecutorAdapter = getattr(importlib.import_module(module), attribute)
    return found


def adapters() -> list[ExecutorAdapter]:
    return [adapter(name) for name in ADAPTERS]


def add_executor_flag(parser: argparse.ArgumentParser, flag: FlagAdder, **kwargs: Any) -> None:
    """`--executor`, whose choices are the registered names."""
    flag(parser, "--executor", default=DEFAULT, choices=names(), **kwargs)


def add_flags(parser: argparse.ArgumentParser, flag: FlagAdder, where: FlagSet) -> None:
    """Every adapter's flags of `where`, in the order of `ADAPTERS`, then the flags all of
    them take."""
    for each in adapters():
        each.add_flags(parser, flag, where)
    if where is FlagSet.DAEMON_RUNS:
        flag(parser, "--engine-fallback", choices=get_args(EngineFallback),
             help="The engine a stack runs when the one it declares is not installed where "
             "it runs (the run log and the status say which ran); default: none, such a run "
             "fails.")


def executor_settings(args: argparse.Namespace) -> tuple[BaseModel, ...]:
    """Every adapter's settings from the flags (`Settings.executor_settings`)."""
    return tuple(each.settings(args) for each in adapters())


def electing() -> list[str]:
    """The executors `--leader-elect` works with."""
    return [each.name for each in adapters() if each.elects_leaders]
