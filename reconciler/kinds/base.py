"""What a kind must provide, and the registry of kinds (DESIGN §1).

Code above this layer asks the registry instead of branching on `Kind`; code below it that
must tell kinds apart does so with a `match` that ends in `assert_never`, so a new kind is
caught by the type checker wherever it has to be handled.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from typing import Protocol

from reconciler.declarations.entries import Entry
from reconciler.plan import Lifecycle
from reconciler.types import Kind, Operation


class Launch(StrEnum):
    """What an executor starts for a run: each executor has one way of starting each."""

    COMMAND = "command"
    """The entry's own command (a task's image, command and args), in a folder holding its
    files, with its `repository` cloned into the workspace when it names one."""
    STACK_RUNNER = "stack-runner"
    """The stack runner program, in the entry's folder of the repository checked out at the
    run's revision; it ends its log with a `::reconciler-result::` line."""


class KindDef(Protocol):
    """Everything the layers above this one need to know of one kind."""

    @property
    def kind(self) -> Kind: ...

    @property
    def operations(self) -> tuple[Operation, ...]:
        """What its runs can do (`reconciler drift` refuses a kind without `drift`)."""
        ...

    @property
    def launch(self) -> Launch:
        """What the executors start for its runs."""
        ...

    @property
    def reports_result(self) -> bool:
        """Whether its runs end their log with a result line (`runs.parse_result_line`),
        which the executors read into the run's report and leave out of its log tail."""
        ...

    def lifecycle(self, entry: Entry) -> Lifecycle:
        """How plan treats the entry: what succeeds it, its crons, drift, prune. The scheduler
        takes its cron jobs from here, and `render` the operation it shows."""
        ...


@cache
def registry() -> Mapping[Kind, KindDef]:
    """Every kind of entry, by `Kind`, in the order they are listed. Imported when first asked
    for: the kinds import this module."""
    from reconciler.kinds import stack, task  # noqa: PLC0415

    return {definition.kind: definition for definition in (task.TASK, stack.STACK)}


def kind_of(kind: Kind) -> KindDef:
    return registry()[kind]
