"""What a kind must provide, and the registry of kinds (DESIGN §1).

Code above this layer asks the registry instead of branching on `Kind`; code below it that
must tell kinds apart does so with a `match` that ends in `assert_never`, so a new kind is
caught by the type checker wherever it has to be handled.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Protocol

from reconciler.declarations.entries import Entry
from reconciler.plan import Lifecycle
from reconciler.types import Kind


class KindDef(Protocol):
    """Everything the daemon, the scheduler and the executors need to know of one kind."""

    kind: Kind

    def lifecycle(self, entry: Entry) -> Lifecycle:
        """How plan treats the entry: what succeeds it, its crons, drift, prune."""
        ...


@cache
def registry() -> Mapping[Kind, KindDef]:
    """Every kind, by `Kind`. Imported when first asked for: the kinds import this module."""
    from reconciler.kinds import stack, task  # noqa: PLC0415

    return {definition.kind: definition for definition in (task.TASK, stack.STACK)}


def kind_of(kind: Kind) -> KindDef:
    return registry()[kind]
