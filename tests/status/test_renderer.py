"""The incremental `status.Renderer` against rendering from scratch (`status.render`): over
random histories of records changing, appearing, disappearing and being copied, every call
gives the same bytes for every file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import status
from reconciler.declarations.entries import LoadError, Location
from reconciler.records import DriftInfo, EntryRecord, RunInfo
from reconciler.redact import Redactor
from reconciler.runs import PlanChanges
from reconciler.types import (
    DriftState,
    EntryId,
    Kind,
    Operation,
    Phase,
    Revision,
    RunId,
    RunState,
    SpecHash,
    Trigger,
    entry_id,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
REV = Revision("c" * 40)
IDS = [entry_id(kind, name) for kind in (Kind.TASK, Kind.STACK) for name in ("a", "b", "c-1", "z")]


@st.composite
def records(draw: Any, entry: EntryId) -> EntryRecord:
    kind, name = (Kind.TASK, entry[5:]) if entry.startswith("task/") else (Kind.STACK, entry[6:])
    run = None
    if draw(st.booleans()):
        finished = draw(st.booleans())
        run = RunInfo(id=RunId(f"{name}-r{draw(st.integers(1, 3))}"), operation=Operation.RUN,
                      trigger=Trigger.NEW, spec_hash=SpecHash("h1"), revision=REV,
                      state=RunState.SUCCEEDED if finished else RunState.RUNNING,
                      started_at=T0, finished_at=T0 + timedelta(seconds=3) if finished else None)
    drift = None
    if kind is Kind.STACK and draw(st.booleans()):
        drift = DriftInfo(state=draw(st.sampled_from(list(DriftState))),
                          changes=PlanChanges(add=draw(st.integers(0, 2))))
    return EntryRecord(entry=entry, kind=kind, name=name, phase=draw(st.sampled_from(list(Phase))),
                       message=draw(st.sampled_from(["", "ok", "a | b\nc", "x" * 250])),
                       commit=draw(st.sampled_from([None, REV])), last_run=run, drift=drift)


@st.composite
def changes(draw: Any) -> tuple[str, EntryId, EntryRecord | None]:
    entry = draw(st.sampled_from(IDS))
    what = draw(st.sampled_from(["put", "put", "drop", "copy"]))
    return what, entry, draw(records(entry)) if what == "put" else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(st.lists(changes(), max_size=4), min_size=1, max_size=12),
       errors=st.lists(st.integers(0, 2), min_size=12, max_size=12))
def test_the_renderer_gives_the_bytes_of_rendering_from_scratch(
        history: list[list[tuple[str, EntryId, EntryRecord | None]]], errors: list[int]) -> None:
    renderer = status.Renderer(branch="main", redact=Redactor())
    current: dict[EntryId, EntryRecord] = {}
    for cycle, (batch, error_count) in enumerate(zip(history, errors, strict=False)):
        for what, entry, record in batch:
            if what == "put" and record is not None:
                current[entry] = record
            elif what == "drop":
                current.pop(entry, None)
            elif entry in current:
                current[entry] = current[entry].model_copy()
        load_errors = [LoadError(location=Location(path=f"f{n}.yaml", line=n + 1), message="bad")
                       for n in range(error_count)]
        revision = Revision(f"{cycle:040d}")
        expected = status.render(current, load_errors, branch="main", revision=revision,
                                 redact=Redactor())
        assert renderer.render(current, load_errors, revision=revision) == expected
