"""deploy/monitoring: the alert rules pass promtool's checks and unit tests, the Operator copy
matches the plain file, every alert has its runbook, and the ServiceMonitor finds the daemon."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.deploy.support import (
    DOCS,
    MONITORING,
    find,
    load_yaml,
    rendered,
    tool,
)

RULES = MONITORING / "rules.yaml"
RULE_TESTS = MONITORING / "tests" / "alerts.test.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def alerts() -> list[dict[str, Any]]:
    groups = load_yaml(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_would_catch_a_broken_rule(tmp_path: Any) -> None:
    """A rule whose threshold is off makes promtool fail: the tests check what fires."""
    broken = RULES.read_text().replace("> 86400", "> 864000")
    (tmp_path / "rules.yaml").write_text(broken)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "alerts.test.yaml").write_text(RULE_TESTS.read_text())
    result = promtool("test", "rules", str(tests / "alerts.test.yaml"))
    assert result.returncode != 0
    assert "ReconcilerDriftUnresolved" in result.stdout + result.stderr


def test_every_alert_has_a_firing_unit_test_checking_its_annotations() -> None:
    cases = load_yaml(RULE_TESTS.read_text())["tests"]
    checked: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        for check in case.get("alert_rule_test", []):
            checked.setdefault(check["alertname"], []).extend(check.get("exp_alerts") or [])
    for alert in alerts():
        fired = checked.get(alert["alert"], [])
        assert fired, f"{alert['alert']} has no promtool test where it fires"
        for expected in fired:
            assert set(expected.get("exp_annotations", {})) == set(alert["annotations"]), (
                f"a test of {alert['alert']} does not check every annotation")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, spaces to dashes, punctuation dropped."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_alert_is_explained_and_has_a_runbook() -> None:
    anchors = _anchors((DOCS / "alerts.md").read_text())
    for alert in alerts():
        name = alert["alert"]
        annotations = alert["annotations"]
        assert annotations.get("summary"), name
        assert annotations.get("description"), name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        path, _, anchor = annotations["runbook"].partition("#")
        assert path == "docs/alerts.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"docs/alerts.md has no section {name}"


def test_descriptions_name_what_the_alert_is_about() -> None:
    """Per-entry alerts keep the entry's labels and put them in the description."""
    for alert in alerts():
        by = re.findall(r"by \(([^)]*)\)", alert["expr"])
        kept = {label.strip() for label in by[0].split(",")} if by else set()
        for label in kept & {"name", "stack", "kind"}:
            assert f"$labels.{label}" in alert["annotations"]["description"], alert["alert"]


def test_the_prometheus_rule_holds_the_same_rules() -> None:
    rule = load_yaml((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == load_yaml(RULES.read_text())["groups"], (
        "prometheusrule.yaml differs from rules.yaml: copy the groups over")


def test_monitoring_renders_the_rule_the_monitor_and_the_dashboard() -> None:
    objects = rendered("monitoring")
    find(objects, "PrometheusRule", "reconciler")
    dashboard = find(objects, "ConfigMap", "reconciler-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["reconciler-dashboard.json"] == (
        MONITORING / "reconciler-dashboard.json").read_text()


@pytest.mark.parametrize("overlay", ["overlays/single", "overlays/ha"])
def test_the_service_monitor_scrapes_the_daemon(overlay: str) -> None:
    monitor = find(rendered("monitoring"), "ServiceMonitor", "reconciler")
    objects = rendered(overlay)
    service = find(objects, "Service", "reconciler")
    spec = monitor["spec"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # ReconcilerDown selects job="reconciler": the Operator names the job after the Service.
    assert "jobLabel" not in spec
    assert service["metadata"]["name"] == "reconciler"
    assert 'up{job="reconciler"}' in RULES.read_text()
