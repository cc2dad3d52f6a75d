"""The executor port: submit a run, observe runs, fetch logs, cancel (DESIGN §5).

The daemon talks to executors only through this protocol; a shared test suite runs against
every adapter (`executors/local`, `executors/kubernetes`), which `executors/registry.py` finds
by name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from reconciler.declarations.entries import Entry
from reconciler.runs import RunReport, RunRequest, StackResult
from reconciler.types import EntryId, Revision, RunId, RunState, SpecHash


def run_message(state: RunState, message: str, result: StackResult | None) -> str:
    """What the report of a run whose program ended by itself says. A stack run that failed
    says why in its result (`engine opentofu is not installed ...`, the engine's own located
    error), which tells the reader more than the exit code it ended with. A timeout keeps the
    executor's words, and so must a cancellation (callers pass its own message): the runner
    only saw a signal."""
    if state is RunState.FAILED and result is not None and result.error:
        return result.error
    return message


class Workspace(Protocol):
    """Writes the repository's files at a commit into a directory (stacks need their module
    and whatever it references). Implemented by `source`; injected into executors."""

    def materialize(self, revision: Revision, dest: Path) -> None: ...


class Executor(Protocol):
    name: str

    def free_slots(self) -> int:
        """How many more runs may start now (`--max-parallel` minus active runs)."""
        ...

    def expect(self, entries: Sequence[Entry]) -> None:
        """The entries now declared, before the next `poll`: an executor that observes runs
        per place (Kubernetes namespaces) starts looking where their runs would be, so runs
        started before a restart are found and not started again."""
        ...

    def submit(self, request: RunRequest) -> None:
        """Start a run. Problems of the run itself (a missing secret, a bad image) are reported
        as a failed run through `poll`, never raised. Submitting a run id that already exists
        adopts it instead of starting a second one. An executor may hold the run until
        `flush` (or its next call of any other kind), to record a cycle's runs together."""
        ...

    def flush(self) -> None:
        """The runs submitted so far are recorded and started: the daemon calls it once it
        has submitted a cycle's runs."""
        ...

    def on_change(self, callback: Callable[[], None]) -> bool:
        """Have `callback` called, from any thread, as soon as a run may have ended, so the
        daemon looks at once rather than on its next poll. False when this executor cannot
        tell: the daemon then keeps looking every second while runs are in flight."""
        ...

    def poll(self) -> Sequence[RunReport]:
        """Every active run, and every finished run not yet acknowledged."""
        ...

    def acknowledge(self, run_ids: Sequence[RunId]) -> None:
        """The daemon has recorded these finished runs in a pushed status commit."""
        ...

    def latest(
        self, versions: Mapping[EntryId, SpecHash], known: Collection[RunId] = ()
    ) -> Sequence[RunReport]:
        """What this executor durably knows of these versions (entry → spec hash), acknowledged
        or not, for a daemon whose status records may be missing or older (a status branch
        that was reset): of each version, its newest finished run, its newest successful run
        and its newest finished drift check, oldest first, leaving out the runs in `known`
        (what the records already show). One lookup for all versions (a journal query, an
        informer's cache); nothing is started."""
        ...

    def logs(self, run_id: RunId) -> str:
        """The whole log of a run (redacted), or '' when there is none."""
        ...

    def cancel(self, run_id: RunId) -> None: ...

    def close(self) -> None: ...
