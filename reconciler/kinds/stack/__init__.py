"""Stacks: an OpenTofu/Terraform root module applied when it changes and planned for drift.

The package holds everything about them: how a run is launched (`launch`), the engine's
process (`engine`), the runner (`runner`), what a run found (`summaries`) and how their state
stays private (`files`).
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.declarations.entries import Entry
from reconciler.kinds.base import Launch
from reconciler.kinds.stack.launch import STACK_OPERATIONS
from reconciler.plan import Lifecycle
from reconciler.types import Kind, Operation


@dataclass(frozen=True)
class _Stack:
    kind: Kind = Kind.STACK
    operations: tuple[Operation, ...] = STACK_OPERATIONS
    launch: Launch = Launch.STACK_RUNNER
    reports_result: bool = True

    def lifecycle(self, entry: Entry) -> Lifecycle:
        stack = entry.stack
        applies = stack.apply == "auto"
        return Lifecycle(
            success=Operation.APPLY if applies else Operation.PLAN,
            drift=stack.drift.schedule,
            remediate=stack.drift.remediate and applies,
            # A plan-only stack has applied nothing, so there is nothing of it to destroy.
            prune=stack.prune and applies,
            # A plan request is a drift plan now: a plan against the state, never applied.
            plans=Operation.DRIFT,
        )


STACK = _Stack()
