"""The registry of kinds: every kind of entry is in it, and what each says of its entries is
what the daemon did before the kinds had a home (operations, crons, status folders)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler import status
from reconciler.declarations.entries import DesiredState, Entry, Location
from reconciler.declarations.models import StackSpec, TaskSpec
from reconciler.kinds.base import Launch, kind_of, registry
from reconciler.kinds.stack.launch import STACK_OPERATIONS
from reconciler.plan import Lifecycle
from reconciler.records import EntryRecord
from reconciler.scheduler import crons
from reconciler.types import (
    ENTRY_KINDS,
    EntryId,
    Kind,
    Operation,
    Phase,
    SpecHash,
    entry_id,
    split_entry_id,
)


def task(name: str = "nightly", **spec: Any) -> Entry:
    return Entry(
        id=entry_id(Kind.TASK, name), kind=Kind.TASK, name=name,
        spec=TaskSpec(command=["true"], **spec), spec_hash=SpecHash("t" * 64),
        location=Location(path=f"{name}.yaml"), timeout_seconds=3600,
    )


def stack(name: str = "web", **spec: Any) -> Entry:
    return Entry(
        id=entry_id(Kind.STACK, name), kind=Kind.STACK, name=name,
        spec=StackSpec(path=f"stacks/{name}", **spec), spec_hash=SpecHash("s" * 64),
        location=Location(path=f"{name}.yaml"), timeout_seconds=3600,
    )


def test_every_kind_but_defaults_is_registered_under_its_own_kind() -> None:
    assert tuple(registry()) == ENTRY_KINDS == (Kind.TASK, Kind.STACK)
    assert set(Kind) - set(registry()) == {Kind.DEFAULTS}
    for kind, definition in registry().items():
        assert definition.kind is kind
        assert kind_of(kind) is definition


@pytest.mark.parametrize(("entry", "want"), [
    (task(), Lifecycle(success=Operation.RUN)),
    (task(schedule="0 3 * * *"), Lifecycle(success=Operation.RUN, schedule="0 3 * * *")),
    (stack(), Lifecycle(success=Operation.APPLY, plans=Operation.DRIFT)),
    (stack(apply="plan"), Lifecycle(success=Operation.PLAN, plans=Operation.DRIFT)),
    (stack(prune=True), Lifecycle(success=Operation.APPLY, plans=Operation.DRIFT, prune=True)),
    # A plan-only stack applied nothing: nothing to destroy, no drift to remediate.
    (stack(apply="plan", prune=True, drift={"schedule": "0 * * * *", "remediate": True}),
     Lifecycle(success=Operation.PLAN, plans=Operation.DRIFT, drift="0 * * * *")),
    (stack(drift={"schedule": "0 * * * *", "remediate": True}),
     Lifecycle(success=Operation.APPLY, plans=Operation.DRIFT, drift="0 * * * *", remediate=True)),
], ids=["task", "task-cron", "stack", "stack-plan-only", "stack-prune",
        "stack-plan-only-prune-remediate", "stack-remediate"])
def test_lifecycle_of_each_entry(entry: Entry, want: Lifecycle) -> None:
    got = kind_of(entry.kind).lifecycle(entry)
    assert got == want
    assert got.success in kind_of(entry.kind).operations
    assert got.steady is (Phase.PLANNED if want.success is Operation.PLAN else Phase.SUCCEEDED)


def test_what_each_kind_runs_and_how_it_is_launched() -> None:
    assert kind_of(Kind.TASK).operations == (Operation.RUN,)
    assert kind_of(Kind.STACK).operations == STACK_OPERATIONS
    assert Operation.DRIFT not in kind_of(Kind.TASK).operations
    assert kind_of(Kind.TASK).launch is Launch.COMMAND
    assert kind_of(Kind.STACK).launch is Launch.STACK_RUNNER
    # Only the stack runner ends its log with a result line.
    assert not kind_of(Kind.TASK).reports_result
    assert kind_of(Kind.STACK).reports_result


def test_cron_jobs_are_the_crons_of_each_lifecycle() -> None:
    desired = DesiredState(entries={e.id: e for e in (
        task("plain"),
        task("nightly", schedule="0 3 * * *"),
        stack("quiet"),
        stack("watched", drift={"schedule": "*/15 * * * *"}),
        stack("planned", apply="plan", drift={"schedule": "0 * * * *"}),
    )})
    assert crons(desired) == {
        "cron:task/nightly": ("0 3 * * *", "UTC"),
        "drift:stack/watched": ("*/15 * * * *", "UTC"),
        "drift:stack/planned": ("0 * * * *", "UTC"),
    }


@pytest.mark.parametrize(("entry", "path"), [
    (task(), "status/tasks/nightly.yaml"),
    (stack(), "status/stacks/web.yaml"),
])
def test_status_folder_of_each_kind(entry: Entry, path: str) -> None:
    record = EntryRecord(entry=entry.id, kind=entry.kind, name=entry.name)
    assert status.record_path(record) == path
    assert status.entry_of(path) == entry.id
    assert path.split("/")[1] == entry.kind.plural


def test_entry_ids_name_only_kinds_of_entries() -> None:
    assert split_entry_id("task/a") == (Kind.TASK, "a")
    assert split_entry_id(EntryId("stack/b")) == (Kind.STACK, "b")
    with pytest.raises(ValueError, match="expected task/NAME or stack/NAME, got 'defaults/x'"):
        split_entry_id("defaults/x")
    assert not Kind.DEFAULTS.entries
    with pytest.raises(ValueError, match="no status"):
        _ = Kind.DEFAULTS.plural
