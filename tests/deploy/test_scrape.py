"""The dashboard and the alerts against a running daemon: every series they query is one the
daemon exports, and the alerts fire on the series a real failure produces."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.deploy.daemon import Scrape, running_daemon, wait_for_scrape
from tests.deploy.support import MONITORING, load_yaml, tool
from tests.deploy.test_dashboard import queries

pytestmark = pytest.mark.slow

METRIC = re.compile(r"\breconciler_[a-z0-9_]+\b")
PROMETHEUS_SERIES = {"up"}
"""Series Prometheus adds to every scrape; the alert rules may use them."""


def settled(scrape: Scrape) -> bool:
    """The first runs have finished and the broken task is Failed."""
    failed = {"kind": "task", "name": "broken", "phase": "Failed"}
    return scrape.has("reconciler_entry_phase", failed) and scrape.has(
        "reconciler_status_push_total", {"result": "success"})


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    with running_daemon(tmp_path_factory.mktemp("scrape")) as (url, process, log):
        yield wait_for_scrape(url, settled, process, log)


def rule_expressions() -> list[str]:
    groups = load_yaml((MONITORING / "rules.yaml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_dashboard_queries_name_only_exported_series(scrape: Scrape) -> None:
    used = {name for expr in queries() for name in METRIC.findall(expr)}
    assert used, "the dashboard queries no reconciler series"
    assert used - scrape.sample_names() == set()


def test_alert_rules_name_only_exported_series(scrape: Scrape) -> None:
    used = {name for expr in rule_expressions() for name in METRIC.findall(expr)}
    assert used - scrape.sample_names() == set()
    names = {n for expr in rule_expressions() for n in re.findall(r"\b([a-z_]+)\{", expr)}
    assert names - scrape.sample_names() - PROMETHEUS_SERIES == set()


def test_the_dashboard_shows_every_series_the_daemon_exports(scrape: Scrape) -> None:
    used = {name for expr in queries() for name in METRIC.findall(expr)}
    families = {f.name for f in scrape.families if f.name.startswith("reconciler_")}
    shown = {f for f in families if any(u == f or u.startswith(f + "_") for u in used)}
    assert families - shown == set()


def _series(name: str, labels: dict[str, str]) -> str:
    where = {**labels, "job": "reconciler", "instance": "10.0.0.1:9100",
             "namespace": "reconciler", "pod": "reconciler-0"}
    return name + "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(where.items())) + "}"


def _without_annotations(path: Path) -> Path:
    """rules.yaml minus annotations (test_monitoring.py checks those): here only who fires."""
    document = load_yaml((MONITORING / "rules.yaml").read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    with path.open("w") as out:
        YAML(typ="safe", pure=True).dump(document, out)
    return path


def alerts_on(scrape: Scrape, expected: dict[str, list[dict[str, str]]],
              tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool's verdict on `expected` when the scraped series are held for 10 minutes."""
    series = [{"series": _series(name, labels), "values": f"{value!r}x10"}
              for name, labels, value in scrape.samples() if not name.endswith("_bucket")]
    series.append({"series": _series("up", {}), "values": "1x10"})
    case = {"name": "the series of a real daemon", "interval": "1m", "input_series": series,
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": alert,
                 "exp_alerts": [{"exp_labels": {"namespace": "reconciler", **labels}}
                                for labels in fired]}
                for alert, fired in expected.items()]}
    rules = _without_annotations(tmp_path / "rules.yaml")
    document = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [case]}
    path = tmp_path / "scraped.test.yaml"
    with path.open("w") as out:
        YAML(typ="safe", pure=True).dump(document, out)
    return subprocess.run([tool("promtool"), "test", "rules", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_alerts_fire_on_what_a_real_daemon_reports(scrape: Scrape, tmp_path: Path) -> None:
    warning = {"severity": "warning"}
    result = alerts_on(scrape, {
        "ReconcilerRunFailed": [{**warning, "kind": "task", "name": "broken",
                                 "phase": "Failed"}],
        "ReconcilerInvalidDeclarations": [{**warning, "kind": "task", "name": "typo"}],
        "ReconcilerDown": [],
        "ReconcilerNoLeader": [],
        "ReconcilerSourceNotSynced": [],
        "ReconcilerStatusPushFailing": [],
        "ReconcilerDriftDetected": [],
        "ReconcilerDriftUnresolved": [],
    }, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_file_that_cannot_be_read_raises_an_alert(scrape: Scrape, tmp_path: Path) -> None:
    result = alerts_on(scrape, {
        "ReconcilerDeclarationsUnreadable": [{"severity": "warning", "kind": "unknown"}],
    }, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
