"""The ServiceMonitor and PrometheusRule match the Prometheus Operator's CRD schemas."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.crds import crd_problems
from tests.deploy.support import CRD_KINDS, find, rendered


@pytest.mark.parametrize("kind", sorted(CRD_KINDS))
def test_the_object_matches_its_crd(kind: str) -> None:
    obj = find(rendered("monitoring"), kind)
    assert crd_problems(obj) == []


def test_a_misspelled_field_is_caught() -> None:
    monitor = copy.deepcopy(find(rendered("monitoring"), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["scrapeTimout"] = "10s"
    monitor["spec"]["selector"]["matchLabel"] = {}
    assert crd_problems(monitor) == ["unknown field spec.endpoints[0].scrapeTimout",
                                     "unknown field spec.selector.matchLabel"]


def test_a_wrong_type_is_caught() -> None:
    rule = copy.deepcopy(find(rendered("monitoring"), "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["labels"] = ["severity"]
    assert crd_problems(rule)
