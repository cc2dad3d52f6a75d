"""Stacks: an OpenTofu/Terraform root module applied when it changes and planned for drift."""

from __future__ import annotations

from reconciler.declarations.entries import Entry
from reconciler.plan import Lifecycle
from reconciler.types import Kind, Operation


class _Stack:
    kind = Kind.STACK

    def lifecycle(self, entry: Entry) -> Lifecycle:
        stack = entry.stack
        applies = stack.apply == "auto"
        return Lifecycle(
            success=Operation.APPLY if applies else Operation.PLAN,
            drift=stack.drift.schedule,
            remediate=stack.drift.remediate and applies,
            # A plan-only stack has applied nothing, so there is nothing of it to destroy.
            prune=stack.prune and applies,
        )


STACK = _Stack()
