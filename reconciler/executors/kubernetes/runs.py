"""What the executor remembers of a run beyond its Job, and the reports it makes of runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from reconciler.executors.base import run_message
from reconciler.executors.kubernetes.labels import RunMeta
from reconciler.executors.kubernetes.manifests import RunManifests
from reconciler.executors.kubernetes.phases import Observation
from reconciler.runs import RunReport, RunRequest, read_result, strip_result_lines, tail
from reconciler.types import Operation, RunState

_T = TypeVar("_T")


@dataclass
class Tracked:
    namespace: str
    request: RunRequest | None = None
    """Known when this process submitted the run; None for a run found in the cluster."""
    manifests: RunManifests | None = None
    """Set while the objects are still to be created (the API server did not answer)."""
    due: datetime | None = None
    waiting: str = ""
    owner_of: dict[str, Any] | None = None
    """The Job, while it is not yet the owner of the run's ConfigMap."""
    last: RunReport | None = None
    final: RunReport | None = None
    """A finished run's report: it no longer changes (nor is its log read again)."""
    blocked_since: datetime | None = None
    tail: str = ""
    tail_read_at: datetime | None = None
    masked: bool = False
    withheld: str | None = None
    delete: bool = False
    """A cancelled run whose Job could not be deleted yet."""


def synthetic(request: RunRequest, state: RunState, message: str, now: datetime) -> RunReport:
    """A report of a run that has no Job to report from (refused, waiting, cancelled early)."""
    return RunReport(
        run_id=request.run_id, entry_id=request.entry.id, spec_hash=request.entry.spec_hash,
        operation=request.operation, trigger=request.trigger, attempt=request.attempt,
        revision=request.revision, state=state, finished_at=now if state.finished else None,
        message=message,
    )


def fail(run: Tracked, message: str, now: datetime) -> None:
    """A run that can no longer be followed fails, saying why, rather than staying Running
    for ever; one not yet created never will be."""
    run.manifests = None
    if run.last is not None:
        run.final = run.last.model_copy(update={
            "state": RunState.FAILED, "finished_at": now, "message": message})
    elif run.request is not None:
        run.final = synthetic(run.request, RunState.FAILED, message, now)


def observed(meta: RunMeta, seen: Observation, log: str, *, message: str,
             now: datetime) -> RunReport:
    """A report from a Job. A Job retries a failed pod itself (`backoffLimit`): each pod is
    an attempt, so the daemon, which also counts attempts, sees how many were made."""
    failed = seen.state in (RunState.FAILED, RunState.TIMED_OUT)
    result = read_result(log)
    return RunReport(
        run_id=meta.run_id, entry_id=meta.entry_id, spec_hash=meta.spec_hash,
        operation=meta.operation, trigger=meta.trigger,
        attempt=meta.attempt + max(0, seen.failed_pods - (1 if failed else 0)),
        revision=meta.revision, state=seen.state, started_at=seen.started_at,
        finished_at=seen.finished_at or (now if seen.state.finished else None),
        exit_code=seen.exit_code, message=run_message(seen.state, message, result),
        log_tail=tail(strip_result_lines(log)), result=result,
    )


def newest_of_each_version(found: Iterable[tuple[RunMeta, RunState, _T]]) -> list[_T]:
    """Of each entry's finished runs (`found`: the run, how it ended, what to return for it):
    its newest run, its newest successful run and its newest drift check, each once, oldest
    first, as `Executor.latest` returns them. Newest by the time the daemon asked for it."""
    picked: dict[tuple[str, bool, bool], tuple[RunMeta, _T]] = {}
    for meta, state, value in found:
        drift = meta.operation is Operation.DRIFT
        keys = [(meta.entry_id, drift, False)]
        if state is RunState.SUCCEEDED and not drift:
            keys.append((meta.entry_id, False, True))
        for key in keys:
            held = picked.get(key)
            if held is None or (held[0].requested_at, held[0].run_id) < (
                    meta.requested_at, meta.run_id):
                picked[key] = (meta, value)
    unique = {meta.run_id: (meta, value) for meta, value in picked.values()}
    ordered = sorted(unique.values(), key=lambda pair: (pair[0].requested_at, pair[0].run_id))
    return [value for _, value in ordered]
