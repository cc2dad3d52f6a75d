"""The daemon with the Kubernetes executor: the same cycle, runs as Jobs on an API emulator
(the real client over HTTP; a local Job controller and kubelet run the pods as processes)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes.client import BatchV1Api

from reconciler.executors.kubernetes.executor import KubernetesExecutor
from reconciler.executors.kubernetes.manifests import KubernetesOptions
from tests.daemon.conftest import World, declaration
from tests.kubernetes.harness import KubernetesHarness
from tests.support.gitservers import refuse_pushes_to

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


def _once_in_runs(world: Callable[..., World], harness: KubernetesHarness,
                  ledger: Path) -> tuple[World, Callable[[], KubernetesExecutor]]:
    """A Task that leaves a line in `ledger` each time it runs, sent by Defaults to the
    namespace `runs` (not the daemon's), and how to make an executor for it."""
    harness.api.call(harness.api.server.add_namespace, "default")
    w = world({
        "reconciler.yaml": declaration("Defaults", "defaults", namespace="runs"),
        "once.yaml": declaration("Task", "once", image="python:3.12-slim", command=[
            PY, "-c", f"open({str(ledger)!r}, 'a').write('ran\\n')"]),
    })

    def executor() -> KubernetesExecutor:
        made = KubernetesExecutor(api_client=harness.api.client(),
                                  options=KubernetesOptions(namespace="default"),
                                  start_grace=0.2, log_interval=0.0, watch_timeout=30)
        harness.executors.append(made)
        return made

    return w, executor


def test_restart_finds_runs_in_a_defaults_namespace(world: Callable[..., World],
                                                    harness: KubernetesHarness,
                                                    tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    w, executor = _once_in_runs(world, harness, ledger)
    w.daemon.executor.close()
    w.daemon.executor = executor()
    result = w.daemon.cycle(fetch=True)  # the run starts; status says Running
    assert w.status("task/once")["lastRun"]["state"] in ("Pending", "Running")
    hook = refuse_pushes_to(w.bare, "reconciler-status")  # its end cannot be acknowledged
    while result.active or result.started:
        result = w.daemon.cycle(fetch=False)
    assert ledger.read_text() == "ran\n"
    w.restart()  # a new daemon, whose --namespace is not where the run is
    w.daemon.executor.close()
    w.daemon.executor = executor()
    hook.unlink()
    w.settle()
    assert w.status("task/once")["phase"] == "Succeeded"
    assert ledger.read_text() == "ran\n"  # found and reported, not run again


def test_a_forbidden_namespace_fails_its_runs_and_recovers_when_reverted(
        world: Callable[..., World], harness: KubernetesHarness) -> None:
    """sample-repo's own Defaults name `reconciler-demo`, where the daemon (as deploy/ ships
    it) has no RoleBinding: its runs fail saying so, the cycle goes on, and reverting the
    commit runs them in the daemon's namespace, without a restart."""
    harness.api.call(harness.api.server.add_namespace, "reconciler-demo")
    harness.api.call(harness.api.server.forbid_namespace, "reconciler-demo")
    w = world({
        "reconciler.yaml": declaration("Defaults", "defaults", namespace="reconciler-demo"),
        "hello.yaml": declaration("Task", "hello", image="python:3.12-slim",
                                  command=[PY, "-c", "print('hello from a pod')"]),
    })
    w.daemon.executor.close()
    w.daemon.executor = harness.make(denied_retry=0.1)
    w.settle()
    hello = w.status("task/hello")
    assert hello["phase"] == "Failed"
    assert hello["message"].endswith("namespace reconciler-demo: forbidden by RBAC (the "
                                     "daemon's service account may not list jobs there)")
    assert w.daemon.executor.free_slots() == 4

    w.push({"reconciler.yaml": None}, "Revert: runs go to the daemon's namespace")
    w.settle()
    hello = w.status("task/hello")
    assert hello["phase"] == "Succeeded"
    assert "hello from a pod" in hello["lastRun"]["logTail"]


def test_restart_with_the_status_branch_reset_adopts_the_finished_job(
        world: Callable[..., World], harness: KubernetesHarness, tmp_path: Path) -> None:
    """The Job of a recorded run is still in the cluster (its TTL has not passed) when a person
    resets the status branch to its first commit (which shows the run Running) and the daemon
    restarts: the run is adopted from its Job, not taken for interrupted and run again."""
    ledger = tmp_path / "ledger"
    w, executor = _once_in_runs(world, harness, ledger)
    w.daemon.executor.close()
    w.daemon.executor = executor()
    w.settle()
    before = w.status("task/once")
    assert (before["phase"], ledger.read_text()) == ("Succeeded", "ran\n")
    w.user.git("fetch", "--quiet", "origin", "reconciler-status")
    first = w.user.git("rev-list", "--max-parents=0", "FETCH_HEAD")
    w.user.git("push", "--quiet", "--force", "origin", f"{first}:refs/heads/reconciler-status")
    assert w.status("task/once")["lastRun"]["state"] in ("Pending", "Running")
    w.restart()
    w.daemon.executor.close()
    w.daemon.executor = executor()
    w.settle()
    after = w.status("task/once")
    assert after["phase"] == "Succeeded"
    assert {k: after["lastRun"][k] for k in ("id", "state", "exitCode", "startedAt")} == {
        k: before["lastRun"][k] for k in ("id", "state", "exitCode", "startedAt")}
    assert ledger.read_text() == "ran\n"  # adopted from its Job, not run again
