"""Namespaces the daemon may not use: the API server answers 403 there (RBAC grants its account
nothing), and only the runs that go there fail, with a message that says so; the other
namespaces' runs start and finish, `poll` never raises, free slots count what is known, an
undeclared namespace stops being watched, and an allowed one recovers without a restart."""

from __future__ import annotations

from collections.abc import Callable

from reconciler.declarations.entries import Entry
from reconciler.declarations.models import DefaultsSpec
from reconciler.executors.kubernetes.executor import KubernetesExecutor
from reconciler.executors.kubernetes.manifests import KubernetesOptions
from reconciler.types import Operation, RunState
from tests.executors.conftest import request_for, task_entry, wait_for_run
from tests.kubernetes.cluster import LocalCluster
from tests.kubernetes.conftest import DAEMON_AGENT
from tests.kubernetes.server import RunningApiServer
from tests.kubernetes.test_executor import stack_entry
from tests.support.waiting import wait_until

Make = Callable[..., KubernetesExecutor]
FORBIDDEN = "data-x"
MESSAGE = (f"namespace {FORBIDDEN}: forbidden by RBAC (the daemon's service account may not "
           "list jobs there)")


def in_namespace(entry: Entry, namespace: str) -> Entry:
    return entry.model_copy(update={"defaults": DefaultsSpec(namespace=namespace)})


def forbid(apiserver: RunningApiServer, namespace: str = FORBIDDEN) -> None:
    apiserver.call(apiserver.server.add_namespace, namespace)
    apiserver.call(apiserver.server.forbid_namespace, namespace, DAEMON_AGENT)


def test_a_forbidden_namespace_fails_only_its_own_runs(
        apiserver: RunningApiServer, cluster: LocalCluster, make_executor: Make) -> None:
    forbid(apiserver)
    executor = make_executor(denied_retry=0.1)
    there = in_namespace(task_entry("there", ["true"]), FORBIDDEN)
    here = task_entry("here", ["true"])
    executor.expect([there, here])
    assert executor.free_slots() == 4  # the daemon's own namespace is known and empty

    executor.submit(request_for(there))
    executor.submit(request_for(here))

    failed = wait_for_run(executor, request_for(there).run_id)
    assert failed.state is RunState.FAILED
    assert failed.message == MESSAGE
    assert wait_for_run(executor, request_for(here).run_id).state is RunState.SUCCEEDED
    executor.poll()  # never raises because of one namespace


def test_a_namespace_where_jobs_cannot_be_created_fails_its_runs(
        apiserver: RunningApiServer, cluster: LocalCluster, make_executor: Make) -> None:
    apiserver.call(apiserver.server.add_namespace, FORBIDDEN)
    executor = make_executor()
    entry = in_namespace(task_entry("create", ["true"]), FORBIDDEN)
    # Listing and watching are allowed; creating is not.
    apiserver.call(apiserver.server.forbid_namespace, FORBIDDEN, DAEMON_AGENT,
                   frozenset({"create"}))
    executor.expect([entry])
    executor.poll()
    request = request_for(entry)
    executor.submit(request)
    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.FAILED
    assert report.message == (f"namespace {FORBIDDEN}: forbidden by RBAC (the daemon's "
                              "service account may not create jobs there)")


def test_a_namespace_allowed_later_recovers_without_a_restart(
        apiserver: RunningApiServer, cluster: LocalCluster, make_executor: Make) -> None:
    forbid(apiserver, "runs")  # the daemon's own namespace, where the cluster runs Jobs
    executor = make_executor(denied_retry=0.1)
    entry = task_entry("later", ["true"])
    executor.expect([entry])
    assert executor.free_slots() == 4
    first = request_for(entry)
    executor.submit(first)
    assert wait_for_run(executor, first.run_id).message == MESSAGE.replace(FORBIDDEN, "runs")
    executor.acknowledge([first.run_id])

    apiserver.call(apiserver.server.permit_namespace, "runs")
    wait_until(lambda: all(i.synced for i in executor.informers("runs")), timeout=15,
               what="the informers to sync")
    second = request_for(entry, attempt=2)
    executor.submit(second)
    assert wait_for_run(executor, second.run_id).state is RunState.SUCCEEDED


def test_undeclared_namespaces_are_no_longer_watched(
        apiserver: RunningApiServer, make_executor: Make) -> None:
    forbid(apiserver)
    apiserver.call(apiserver.server.add_namespace, "team-b")
    executor = make_executor(denied_retry=0.1)
    there = in_namespace(task_entry("there", ["true"]), FORBIDDEN)
    other = in_namespace(task_entry("other", ["true"]), "team-b")
    executor.expect([there, other])
    executor.poll()

    def asked(namespace: str) -> int:
        requests = apiserver.call(lambda: list(apiserver.server.requests))
        return sum(1 for agent, _, url in requests
                   if agent == DAEMON_AGENT and f"/namespaces/{namespace}/" in url)

    wait_until(lambda: asked(FORBIDDEN) >= 4)  # asked again and again while forbidden
    stopped = executor.informers(FORBIDDEN)
    executor.expect([other])
    executor.poll()

    assert not any(informer.running for informer in stopped)
    assert set(executor.namespaces()) == {"runs", "team-b"}
    settled = asked(FORBIDDEN)
    wait_until(lambda: asked("team-b") > 0, what="a request to team-b")
    assert asked(FORBIDDEN) == settled  # nothing more is asked of it


def test_a_namespace_whose_role_predates_stack_access_names_what_is_missing(
        apiserver: RunningApiServer, make_executor: Make) -> None:
    """A Role copied from an older deploy/ lets the daemon create Jobs but not a stack's
    account: the run says which permission to add."""
    apiserver.call(apiserver.server.add_namespace, FORBIDDEN)
    apiserver.call(apiserver.server.forbid_namespace, FORBIDDEN, DAEMON_AGENT,
                   frozenset({"create"}))
    options = KubernetesOptions(namespace="runs", source_url="https://git.example.com/r.git")
    executor = make_executor(options=options)
    entry = in_namespace(stack_entry("net"), FORBIDDEN)
    request = request_for(entry).model_copy(update={"operation": Operation.APPLY})
    executor.submit(request)
    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.FAILED
    assert report.message == (f"namespace {FORBIDDEN}: forbidden by RBAC (the daemon's "
                              "service account may not create serviceaccounts there)")
