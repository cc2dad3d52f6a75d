"""The daemon with the Kubernetes executor: the same cycle, runs as Jobs on an API emulator
(the real client over HTTP; a local Job controller and kubelet run the pods as processes)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes.client import BatchV1Api

from tests.daemon.conftest import World, declaration
from tests.kubernetes.harness import KubernetesHarness

pytestmark = pytest.mark.kubernetes
PY = sys.executable


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[KubernetesHarness]:
    h = KubernetesHarness(tmp_path / "k8s")
    yield h
    h.cleanup()


def test_tasks_run_as_jobs_in_dependency_order(world: Callable[..., World],
                                               harness: KubernetesHarness) -> None:
    w = world({
        "prepare.yaml": declaration("Task", "prepare", image="python:3.12-slim",
                                    command=[PY, "-c", "print('prepared in a pod')"]),
        "report.yaml": declaration("Task", "report", image="python:3.12-slim",
                                   command=[PY, "-c", "raise SystemExit(3)"],
                                   dependsOn=["task/prepare"]),
    })
    w.daemon.executor.close()
    w.daemon.executor = harness.make()
    w.settle()
    prepare, report = w.status("task/prepare"), w.status("task/report")
    assert prepare["phase"] == "Succeeded"
    assert "prepared in a pod" in prepare["lastRun"]["logTail"]
    assert (report["phase"], report["lastRun"]["exitCode"]) == ("Failed", 3)
    assert report["lastRun"]["startedAt"] >= prepare["lastRun"]["finishedAt"]
    # The runs are Jobs in the cluster, named by their run ids.
    jobs = BatchV1Api(harness.api.client()).list_namespaced_job("runs").items
    names = {j.metadata.name for j in jobs}
    assert prepare["lastRun"]["id"] in names
