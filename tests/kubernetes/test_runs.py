"""What a stack pod's report says when the run failed: the runner's own error, from the result
line its log ends with, rather than the pod's exit code."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from reconciler.executors.kubernetes.labels import RunMeta
from reconciler.executors.kubernetes.phases import Observation
from reconciler.executors.kubernetes.runs import observed
from reconciler.runs import RESULT_MARKER, StackResult
from reconciler.types import EntryId, Operation, Revision, RunId, RunState, SpecHash, Trigger

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
META = RunMeta(
    run_id=RunId("web-a1-0123456789"), entry_id=EntryId("stack/web"), spec_hash=SpecHash("0" * 64),
    operation=Operation.APPLY, trigger=Trigger.NEW, attempt=1, revision=Revision("a" * 40),
    requested_at=NOW,
)
MISSING = "engine opentofu is not installed (no `tofu` on PATH); ..."


def _log(result: StackResult) -> str:
    return f"error: {result.error}\n{RESULT_MARKER} {json.dumps(result.to_result())}\n"


def test_a_failed_stack_pod_reports_the_runners_error() -> None:
    log = _log(StackResult(operation=Operation.APPLY, error=MISSING))
    seen = Observation(state=RunState.FAILED, exit_code=1, finished_at=NOW)

    report = observed(META, seen, log, message="failed: exit code 1", now=NOW)

    assert report.message == MISSING
    assert report.result is not None
    assert report.result.error == MISSING


def test_a_timed_out_pod_keeps_the_executors_words() -> None:
    log = _log(StackResult(operation=Operation.APPLY, error="interrupted by SIGTERM"))
    seen = Observation(state=RunState.TIMED_OUT, exit_code=1, finished_at=NOW)

    report = observed(META, seen, log, message="timed out after 10m", now=NOW)

    assert report.message == "timed out after 10m"
