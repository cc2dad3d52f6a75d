"""Tasks: a container run once per version of its declaration, and on its cron."""

from __future__ import annotations

from reconciler.declarations.entries import Entry
from reconciler.plan import Lifecycle
from reconciler.types import Kind, Operation


class _Task:
    kind = Kind.TASK

    def lifecycle(self, entry: Entry) -> Lifecycle:
        return Lifecycle(success=Operation.RUN, schedule=entry.task.schedule)


TASK = _Task()
