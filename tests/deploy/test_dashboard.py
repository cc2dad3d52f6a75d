"""The Grafana dashboard: well-formed, laid out without overlaps, and every query is PromQL
that Prometheus accepts (checked by promtool as recording rules)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.deploy.support import MONITORING, tool

DASHBOARD = MONITORING / "reconciler-dashboard.json"
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}
EXAMPLE_VALUES = {"__rate_interval": "2m", "__interval": "30s", "__range": "6h",
                  "namespace": "reconciler", "pod": ".*", "datasource": "prometheus"}


def dashboard() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return value


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries() -> list[str]:
    return [t["expr"] for p in panels() for t in p.get("targets", [])]


def variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)", text))


def substitute(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: EXAMPLE_VALUES[m.group(1)], expr)


def test_the_dashboard_identifies_itself() -> None:
    board = dashboard()
    assert board["uid"] == "reconciler"
    assert board["title"]
    assert board["schemaVersion"] >= 36


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    all_panels = panels()
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_queries_prometheus_through_the_datasource_variable() -> None:
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_variable_used_is_defined() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]}
    used: set[str] = set()
    for text in [*queries(), json.dumps(dashboard()["templating"])]:
        used |= variables(text)
    assert used - GRAFANA_BUILTINS <= defined


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)}
        for i, expr in enumerate(queries())]}]}
    path = tmp_path / "dashboard-queries.yaml"
    with path.open("w") as out:
        YAML(typ="safe", pure=True).dump(rules, out)
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
