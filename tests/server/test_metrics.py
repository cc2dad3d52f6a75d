"""The metrics module: names and labels of DESIGN §6, replaced series, zero-initialised counters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from reconciler.metrics import Metrics
from reconciler.redact import redactor
from reconciler.types import DriftState, Kind, Phase, RunState, Trigger

DESIGN_METRICS = {
    # family name (counters without _total) → label names
    "reconciler_source_fetch": {"result"},
    "reconciler_source_fetch_duration_seconds": set(),
    "reconciler_source_revision_info": {"branch", "commit"},
    "reconciler_last_sync_timestamp_seconds": set(),
    "reconciler_declarations": {"kind", "valid"},
    "reconciler_reconcile_duration_seconds": set(),
    "reconciler_runs": {"kind", "trigger", "result"},
    "reconciler_runs_active": {"kind"},
    "reconciler_run_duration_seconds": {"kind"},
    "reconciler_entry_phase": {"kind", "name", "phase"},
    "reconciler_drift_detected": {"stack"},
    "reconciler_drift_checks": {"result"},
    "reconciler_status_push": {"result"},
    "reconciler_drift_age_seconds": {"stack"},
    "reconciler_leader": {"identity"},
    "reconciler_webhook_requests": {"provider", "result"},
    "reconciler_build_info": {"version"},
}


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scrape(metrics: Metrics) -> dict[str, list[Sample]]:
    body, _ = metrics.render()
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def values(
    metrics: Metrics, family: str, sample: str | None = None, order: tuple[str, ...] = ()
) -> dict[tuple[str, ...], float]:
    """Samples keyed by their label values, in `order` or in exposition order."""
    return {
        tuple(s.labels[k] for k in order) if order else tuple(s.labels.values()): s.value
        for s in scrape(metrics)[family]
        if sample is None or s.name == sample
    }


RUN_LABELS = ("kind", "trigger", "result")


def exercise(metrics: Metrics) -> None:
    metrics.observe_fetch("success", 0.004)
    metrics.set_revision("main", "a" * 40)
    metrics.mark_synced()
    metrics.set_declarations({(Kind.TASK, True): 3, (Kind.STACK, False): 1})
    metrics.observe_reconcile(0.2)
    metrics.run_finished(Kind.TASK, Trigger.NEW, RunState.SUCCEEDED, 42.0)
    metrics.set_runs_active({Kind.STACK: 1})
    metrics.set_entry_phases({(Kind.TASK, "build"): Phase.RUNNING})
    metrics.set_drift({"net": (DriftState.DRIFTED, None)})
    metrics.observe_drift_check(DriftState.DRIFTED)
    metrics.observe_status_push("success")
    metrics.set_leader("pod-a", True)
    metrics.observe_webhook("github", "accepted")


def test_every_design_metric_is_exported_with_its_labels() -> None:
    metrics = Metrics()
    exercise(metrics)
    families = scrape(metrics)
    for name, labels in DESIGN_METRICS.items():
        assert name in families, name
        for sample in families[name]:
            assert set(sample.labels) - {"le"} == labels, (name, sample)


def test_counters_with_known_labels_start_at_zero() -> None:
    metrics = Metrics()
    fetches = values(metrics, "reconciler_source_fetch")
    assert fetches == {("success",): 0, ("error",): 0}
    assert set(values(metrics, "reconciler_status_push")) == {
        ("success",), ("conflict",), ("error",)}
    assert values(metrics, "reconciler_drift_checks") == {
        ("InSync",): 0, ("Drifted",): 0, ("Error",): 0}
    runs = values(metrics, "reconciler_runs", order=RUN_LABELS)
    assert runs[("task", "new", "Failed")] == 0
    assert runs[("stack", "drift", "TimedOut")] == 0
    assert values(metrics, "reconciler_runs_active") == {("task",): 0, ("stack",): 0}
    assert values(metrics, "reconciler_webhook_requests")[("gitlab", "unauthorized")] == 0
    assert not any(name.endswith("_created") for name in scrape(metrics))


def test_entry_phase_series_are_replaced_not_accumulated() -> None:
    metrics = Metrics()
    metrics.set_entry_phases({(Kind.TASK, "build"): Phase.PENDING,
                              (Kind.STACK, "net"): Phase.RUNNING})
    metrics.set_entry_phases({(Kind.TASK, "build"): Phase.RUNNING,
                              (Kind.STACK, "net"): Phase.SUCCEEDED})
    metrics.set_entry_phases({(Kind.TASK, "build"): Phase.FAILED})
    assert values(metrics, "reconciler_entry_phase") == {("task", "build", "Failed"): 1}
    metrics.set_entry_phases({})
    assert values(metrics, "reconciler_entry_phase") == {}


def test_revision_and_declarations_are_replaced() -> None:
    metrics = Metrics()
    metrics.set_revision("main", "a" * 40)
    metrics.set_revision("main", "b" * 40)
    assert values(metrics, "reconciler_source_revision_info") == {("main", "b" * 40): 1}
    metrics.set_declarations({(Kind.TASK, True): 5, ("unknown", False): 2})
    metrics.set_declarations({(Kind.TASK, True): 4})
    assert values(metrics, "reconciler_declarations") == {
        ("task", "true"): 4, ("stack", "true"): 0, ("task", "false"): 0, ("stack", "false"): 0}


def test_runs_are_counted_and_timed_by_kind() -> None:
    metrics = Metrics()
    metrics.run_finished(Kind.STACK, Trigger.CHANGED, RunState.FAILED, 600.0)
    metrics.run_finished(Kind.STACK, Trigger.CHANGED, RunState.FAILED, None)
    assert values(metrics, "reconciler_runs", order=RUN_LABELS)[("stack", "changed", "Failed")] == 2
    counts = values(metrics, "reconciler_run_duration_seconds",
                    "reconciler_run_duration_seconds_count")
    assert counts == {("task",): 0, ("stack",): 1}
    with pytest.raises(ValueError, match="finished state"):
        metrics.run_finished(Kind.TASK, Trigger.NEW, RunState.RUNNING, 1.0)


def test_drift_age_grows_between_cycles_and_resets_when_in_sync() -> None:
    clock = Clock()
    metrics = Metrics(clock=clock)
    detected = datetime.fromtimestamp(clock.now - 300, UTC)
    metrics.set_drift({"net": (DriftState.DRIFTED, detected), "db": (DriftState.IN_SYNC, None),
                       "new": (DriftState.UNKNOWN, None)})
    clock.now += 60
    assert values(metrics, "reconciler_drift_detected") == {("db",): 0, ("net",): 1}
    assert values(metrics, "reconciler_drift_age_seconds") == {("db",): 0, ("net",): 360}
    # A failed check keeps the last known answer; a stack back in sync is 0 again.
    metrics.set_drift({"net": (DriftState.ERROR, detected), "db": (DriftState.ERROR, None)})
    assert values(metrics, "reconciler_drift_detected") == {("db",): 0, ("net",): 1}
    metrics.set_drift({"net": (DriftState.IN_SYNC, None)})
    assert values(metrics, "reconciler_drift_detected") == {("net",): 0}
    assert values(metrics, "reconciler_drift_age_seconds") == {("net",): 0}


def test_drift_without_a_detection_time_ages_from_when_first_seen() -> None:
    clock = Clock()
    metrics = Metrics(clock=clock)
    metrics.set_drift({"net": (DriftState.DRIFTED, None)})
    clock.now += 30
    metrics.set_drift({"net": (DriftState.DRIFTED, None)})
    clock.now += 30
    assert values(metrics, "reconciler_drift_age_seconds") == {("net",): 60}


def test_secret_values_never_become_label_values() -> None:
    canary = "label-canary-5d2b8f"
    redactor.add(canary)
    metrics = Metrics()
    metrics.set_revision(f"feature-{canary}", "c" * 40)
    metrics.set_leader(canary, True)
    metrics.set_entry_phases({(Kind.TASK, canary): Phase.PENDING})
    body, _ = metrics.render()
    assert canary not in body.decode()
    assert "feature-****" in body.decode()


def test_two_instances_do_not_share_series() -> None:
    first, second = Metrics(), Metrics()
    first.observe_fetch("error", 1.0)
    assert values(first, "reconciler_source_fetch")[("error",)] == 1
    assert values(second, "reconciler_source_fetch")[("error",)] == 0


def test_build_info_carries_the_version() -> None:
    assert values(Metrics(version="9.9.9"), "reconciler_build_info") == {("9.9.9",): 1}


def test_leader_reports_one_identity() -> None:
    metrics = Metrics()
    metrics.set_leader("pod-a", True)
    metrics.set_leader("pod-a", False)
    assert values(metrics, "reconciler_leader") == {("pod-a",): 0}
