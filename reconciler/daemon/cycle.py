"""One reconcile cycle as data: what its stages hand each other, and the loop that runs them.

Every stage has one signature, `Stage = Callable[[Cycle], None]`: it reads what earlier stages
left in the `Cycle` and adds its own part. The stages run in order and stop at the first that
raises; the closing stages (status, metrics) run whatever happened, so a failed fetch still
records finished runs (as Flux's reconcilers defer their status patch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from loguru import logger

from reconciler.plan import ActiveRun, Plan
from reconciler.runs import RunReport
from reconciler.types import EntryId, Operation, RunId


@dataclass
class CycleResult:
    """What a cycle tells the loop that drives it."""

    started: int = 0
    active: int = 0
    wake_at: datetime | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class Cycle:
    """The state of one cycle, filled in by its stages in order."""

    fetch: bool = True
    urgent: bool = False
    """Fetch and load at once, whatever the backoff after earlier failures (a webhook)."""
    leading: bool = True
    requests: Mapping[EntryId, Operation] | None = None
    """Run these now and plan nothing else (`Daemon.run_now`)."""
    reports: list[RunReport] = field(default_factory=list)
    """Every run the executor reports, oldest first."""
    finished: list[RunReport] = field(default_factory=list)
    active: dict[EntryId, ActiveRun] = field(default_factory=dict)
    """The runs in flight, by entry."""
    candidates: list[EntryId] | None = None
    """The entries plan would destroy, once a stage asked (`Daemon._candidates`)."""
    held: dict[EntryId, str] = field(default_factory=dict)
    """Why an entry about to be destroyed is still named in the commit."""
    now: datetime | None = None
    plan: Plan | None = None
    changed: set[EntryId] | None = None
    """The entries whose inputs to plan changed since the last plan, once a stage asked
    (`Daemon._candidates`; `daemon.dirty`)."""
    submitted: list[RunId] = field(default_factory=list)
    failure: Exception | None = None
    """What stopped the stages, if anything."""
    result: CycleResult = field(default_factory=CycleResult)


Stage = Callable[[Cycle], None]


def run(cycle: Cycle, stages: Sequence[Stage], closing: Sequence[Stage]) -> Cycle:
    """Run `stages` until one raises (the loop must outlive any stage: the error is logged,
    kept in the result and retried on a later cycle), then every one of `closing`."""
    for stage in stages:
        try:
            stage(cycle)
        except Exception as err:
            logger.opt(exception=err).error("reconcile stage failed: {}", err)
            cycle.result.errors.append(str(err))
            cycle.failure = err
            break
    for stage in closing:
        stage(cycle)
    return cycle
