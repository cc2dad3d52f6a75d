"""Tasks: a container run once per version of its declaration, and on its cron."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.declarations.entries import Entry
from reconciler.kinds.base import Launch
from reconciler.plan import Lifecycle
from reconciler.types import Kind, Operation


@dataclass(frozen=True)
class _Task:
    kind: Kind = Kind.TASK
    operations: tuple[Operation, ...] = (Operation.RUN,)
    launch: Launch = Launch.COMMAND
    reports_result: bool = False

    def lifecycle(self, entry: Entry) -> Lifecycle:
        return Lifecycle(success=Operation.RUN, schedule=entry.task.schedule,
                         zone=entry.task.time_zone)


TASK = _Task()
