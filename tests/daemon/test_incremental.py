"""The incremental cycle seen from outside: after every cycle of a history of changes (a
declaration edited, one removed, a run failing and retried, a dependent unblocked), the
per-entry metrics are exactly those of the records, as if every entry had been exported
again, and the records are a fixed point of a full plan once nothing is left to start."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from reconciler.kinds.base import registry
from reconciler.plan import plan
from reconciler.types import Kind
from tests.daemon.conftest import World, task
from tests.support.waiting import wait_until


def entry_series(w: World) -> dict[tuple[str, str, str], float]:
    body, _ = w.metrics.render()
    return {(s.labels["kind"], s.labels["name"], s.labels["phase"]): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples if s.name == "reconciler_entry_phase"}


def active_series(w: World) -> dict[str, float]:
    body, _ = w.metrics.render()
    return {s.labels["kind"]: s.value for family in text_string_to_metric_families(body.decode())
            for s in family.samples if s.name == "reconciler_runs_active"}


def check(w: World) -> None:
    records = w.daemon.records
    assert entry_series(w) == {(r.kind.prefix, r.name, r.phase.value): 1.0
                               for r in records.values()}
    running = {kind.prefix: 0.0 for kind in (Kind.TASK, Kind.STACK)}
    for r in records.values():
        if r.last_run is not None and not r.last_run.state.finished:
            running[r.kind.prefix] += 1
    assert active_series(w) == running


def settled_by_a_full_plan(w: World) -> bool:
    d = w.daemon
    full = plan(d.desired, d.records, {}, w.clock(), kinds=registry())
    return not full.starts and not full.record_updates


def cycled(w: World) -> bool:
    """One cycle, checked; True when it started nothing and nothing runs."""
    result = w.daemon.cycle(fetch=True)
    assert not result.errors, result.errors
    check(w)
    return not (result.started or result.active)


def test_metrics_and_records_are_those_of_a_full_export_and_plan_after_each_change(
        world: Callable[..., World]) -> None:
    w = world({
        "a.yaml": task("a"),
        "b.yaml": task("b", dependsOn=["task/a"]),
        "c.yaml": task("c", "import sys; sys.exit(3)", retries=1),
        "d.yaml": task("d", suspend=True),
    })
    steps: list[Callable[[], object]] = [
        lambda: None,
        lambda: w.push({"a.yaml": task("a", "import sys; sys.exit(1)")}, "Break a"),
        lambda: w.clock.advance(seconds=30),
        lambda: w.push({"a.yaml": task("a", "print('fixed')")}, "Fix a"),
        lambda: w.push({"d.yaml": None}, "Remove d"),
        lambda: w.push({"e.yaml": task("e", dependsOn=["task/b"])}, "Add e"),
        lambda: w.clock.advance(hours=1),
    ]
    for step in steps:
        step()
        wait_until(lambda: cycled(w), timeout=60, interval=0.05,
                   what="no run active and none started")
        # The cycle after a change confirms what it changed: then nothing is left to plan.
        w.daemon.cycle(fetch=False)
        check(w)
        assert settled_by_a_full_plan(w)
    phases = {r.name: r.phase.value for r in w.daemon.records.values()}
    assert phases == {"a": "Succeeded", "b": "Succeeded", "c": "Failed", "d": "Orphaned",
                      "e": "Succeeded"}
