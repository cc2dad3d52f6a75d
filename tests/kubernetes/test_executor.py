"""The Kubernetes executor beyond the shared protocol suite: adoption after a restart, what
Jobs and pods say in every phase, a watch that drops, an API server that fails or refuses,
and the objects a run leaves behind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.declarations.entries import Entry, Location
from reconciler.declarations.models import DefaultsSpec, StackSpec
from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.adapter import KubernetesSettings
from reconciler.executors.kubernetes.client import KubernetesConfigError, connect
from reconciler.executors.kubernetes.executor import KubernetesExecutor, latest_log
from reconciler.executors.kubernetes.jobs import Outcome, create_run
from reconciler.executors.kubernetes.manifests import KubernetesOptions, build_manifests
from reconciler.runs import RESULT_MARKER, RunRequest, StackResult
from reconciler.settings import Settings
from reconciler.types import Kind, Operation, RunState, SpecHash, Trigger, entry_id
from tests.executors.conftest import report_of, request_for, task_entry, wait_for_run
from tests.kubernetes.cluster import LocalCluster
from tests.kubernetes.conftest import DAEMON_AGENT, NAMESPACE
from tests.kubernetes.driver import JobDriver
from tests.kubernetes.harness import KubernetesHarness
from tests.kubernetes.server import RunningApiServer
from tests.support.waiting import wait_until

Make = Callable[..., KubernetesExecutor]


@pytest.fixture
def driver(apiserver: RunningApiServer) -> JobDriver:
    return JobDriver(apiserver, NAMESPACE)


def running(executor: KubernetesExecutor, request: RunRequest, text: str) -> None:
    wait_for_run(executor, request.run_id, lambda r: text in r.log_tail)


def test_a_restarted_daemon_adopts_its_jobs_and_never_starts_a_second(
        cluster: LocalCluster, make_executor: Make, driver: JobDriver) -> None:
    first = make_executor()
    request = request_for(task_entry("long", ["sh", "-c", "echo started; sleep 30"]))
    first.submit(request)
    running(first, request, "started")
    first.close()

    second = make_executor()
    report = report_of(second, request.run_id)
    assert report is not None
    assert report.state is RunState.RUNNING
    assert (report.entry_id, report.spec_hash) == (request.entry.id, request.entry.spec_hash)
    second.submit(request)
    third = make_executor()
    third.submit(request)  # before its caches are filled: the API server answers 409

    assert driver.jobs() == [request.run_id]
    assert len(driver.pods(request.run_id)) == 1
    assert second.logs(request.run_id).count("started") == 1


def test_adopting_through_409_already_exists(apiserver: RunningApiServer,
                                             driver: JobDriver) -> None:
    request = request_for(task_entry("twice", ["true"], files={"f": "x"}))
    manifests = build_manifests(request, KubernetesOptions(namespace=NAMESPACE))
    first = create_run(driver.batch, manifests, access=driver.access, instance="reconciler")
    again = create_run(driver.batch, manifests, access=driver.access, instance="reconciler")
    other = create_run(driver.batch, manifests, access=driver.access, instance="elsewhere")

    assert first.outcome is Outcome.CREATED
    assert again.outcome is Outcome.ADOPTED
    assert again.job is not None
    assert first.job is not None
    assert again.job["metadata"]["uid"] == first.job["metadata"]["uid"]
    assert other.outcome is Outcome.REFUSED
    assert "not created by this reconciler" in other.message


def test_finished_runs_outlive_a_restart_until_acknowledged(
        cluster: LocalCluster, make_executor: Make, driver: JobDriver) -> None:
    first = make_executor()
    request = request_for(task_entry("done", ["sh", "-c", "echo finished-output"]))
    first.submit(request)
    assert wait_for_run(first, request.run_id).state is RunState.SUCCEEDED
    first.close()

    second = make_executor()
    report = wait_for_run(second, request.run_id)
    assert report.state is RunState.SUCCEEDED
    assert "finished-output" in report.log_tail
    second.acknowledge([request.run_id])
    annotations = driver.job(request.run_id)["metadata"]["annotations"]
    assert annotations[lbl.ANNOTATION_ACKNOWLEDGED] == "true"
    second.close()

    assert make_executor().poll() == []


def test_a_failing_job_reports_every_attempt_it_made(
        cluster: LocalCluster, make_executor: Make, driver: JobDriver) -> None:
    executor = make_executor()
    entry = task_entry("flaky", ["sh", "-c", "echo try; exit 4"])
    entry = entry.model_copy(update={"spec": entry.task.model_copy(update={"retries": 2})})
    request = request_for(entry)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert report.exit_code == 4
    assert report.attempt == 3  # the daemon's retries are used up: it will not submit again
    assert report.message == "failed: exit code 4 after 3 attempts"
    assert len(driver.pods(request.run_id)) == 3


def test_a_dropped_or_expired_watch_is_followed_by_a_fresh_list(
        apiserver: RunningApiServer, cluster: LocalCluster, make_executor: Make) -> None:
    executor = make_executor()
    jobs, pods = executor.informers(NAMESPACE)
    request = request_for(task_entry("watched", ["sh", "-c", "echo up; sleep 0.6"]))
    executor.submit(request)
    running(executor, request, "up")
    lists = jobs.lists

    apiserver.call(apiserver.server.compact)  # resuming from the old version is impossible
    assert apiserver.call(apiserver.server.drop_watches) >= 2

    assert wait_for_run(executor, request.run_id).state is RunState.SUCCEEDED
    wait_until(lambda: jobs.lists > lists and pods.lists > 1)
    wait_until(lambda: apiserver.call(apiserver.server.watcher_count) >= 2)


def test_a_pod_that_cannot_pull_its_image_fails_the_run(
        make_executor: Make, driver: JobDriver) -> None:
    executor = make_executor(start_grace=0.3)
    request = request_for(task_entry("bad-image", ["true"]))
    executor.submit(request)
    pod = driver.start_pod(request.run_id)
    driver.container_state(pod, "run", {"waiting": {
        "reason": "ErrImagePull", "message": 'pull access denied for "busybox:1.36"'}},
        "Pending")

    waiting = wait_for_run(executor, request.run_id, lambda r: "ErrImagePull" in r.message)
    assert waiting.state is RunState.PENDING
    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.FAILED
    assert report.message == ('cannot start: ErrImagePull: pull access denied for '
                              '"busybox:1.36"')
    job = driver.job(request.run_id)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["annotations"][lbl.ANNOTATION_FAILURE] == report.message
    executor.acknowledge([request.run_id])
    wait_until(lambda: driver.jobs() == [], what="no Job left")


def test_an_unreachable_api_keeps_the_run_pending_then_starts_it(
        apiserver: RunningApiServer, cluster: LocalCluster, make_executor: Make) -> None:
    executor = make_executor(retry_delay=0.2)
    apiserver.call(apiserver.server.fail, "POST", "jobs", 503, 2)
    request = request_for(task_entry("patient", ["sh", "-c", "echo made-it"]))
    executor.submit(request)

    first = report_of(executor, request.run_id)
    assert first is not None
    assert first.state is RunState.PENDING
    assert first.message.startswith("waiting for the Kubernetes API")
    assert executor.free_slots() == 3
    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.SUCCEEDED
    assert "made-it" in report.log_tail


def test_objects_the_api_server_refuses_fail_the_run(make_executor: Make) -> None:
    executor = make_executor()
    entry = task_entry("elsewhere", ["true"])
    entry = entry.model_copy(update={"defaults": DefaultsSpec(namespace="nowhere")})
    request = request_for(entry)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.FAILED
    assert report.message == ('the Kubernetes API refused the run: namespaces "nowhere" '
                              "not found")


def test_an_entry_that_cannot_run_on_kubernetes_fails(make_executor: Make) -> None:
    executor = make_executor()
    entry = task_entry("imageless", ["true"])
    entry = entry.model_copy(update={"spec": entry.task.model_copy(update={"image": None})})
    request = request_for(entry)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.FAILED
    assert report.message.startswith("task/imageless: no image")


def test_the_files_config_map_is_owned_by_the_job_and_goes_with_it(
        cluster: LocalCluster, make_executor: Make, driver: JobDriver) -> None:
    executor = make_executor()
    request = request_for(task_entry("owned", ["sh", "-c", "cat f; sleep 30"],
                                     files={"f": "content\n"}))
    executor.submit(request)
    running(executor, request, "content")
    job = driver.job(request.run_id)
    config_map = json.loads(driver.core.read_namespaced_config_map(
        request.run_id, NAMESPACE, _preload_content=False).data)
    assert config_map["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "Job", "name": request.run_id,
        "uid": job["metadata"]["uid"]}]

    executor.cancel(request.run_id)

    def gone() -> bool:
        listed = json.loads(driver.core.list_namespaced_config_map(
            NAMESPACE, _preload_content=False).data)
        return not listed["items"] and not driver.pods() and not driver.jobs()

    wait_until(gone)


def test_a_job_deleted_by_someone_else_interrupts_the_run(
        cluster: LocalCluster, make_executor: Make, driver: JobDriver) -> None:
    executor = make_executor()
    request = request_for(task_entry("deleted", ["sh", "-c", "echo up; sleep 30"]))
    executor.submit(request)
    running(executor, request, "up")

    driver.batch.delete_namespaced_job(request.run_id, NAMESPACE,
                                       propagation_policy="Background")

    report = wait_for_run(executor, request.run_id)
    assert report.state is RunState.INTERRUPTED
    assert report.message == "its Job was deleted before it finished"


def test_logs_are_withheld_when_a_secret_cannot_be_read_to_mask_it(
        apiserver: RunningApiServer, cluster: LocalCluster, make_executor: Make,
        driver: JobDriver) -> None:
    KubernetesHarness.add_secret_to(driver.core, "tokens", "value", "s3cret-value")
    apiserver.call(apiserver.server.fail, "GET", "secrets", 403, 1000, DAEMON_AGENT)
    executor = make_executor()
    entry = task_entry("guarded", ["sh", "-c", "echo visible"],
                       secret_env={"TOKEN": ("tokens", "value")})
    request = request_for(entry)
    executor.submit(request)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.SUCCEEDED
    assert "visible" not in report.log_tail
    assert report.log_tail.startswith("(log withheld: cannot read Secret 'tokens'")
    assert executor.logs(request.run_id).startswith("(log withheld")


def test_runs_of_another_deployment_are_left_alone(
        cluster: LocalCluster, make_executor: Make) -> None:
    other = make_executor(options=KubernetesOptions(namespace=NAMESPACE, instance="staging"))
    request = request_for(task_entry("theirs", ["true"]))
    other.submit(request)
    wait_for_run(other, request.run_id)

    ours = make_executor()
    assert ours.poll() == []
    assert ours.free_slots() == 4


def stack_entry(name: str) -> Entry:
    spec = StackSpec.model_validate({"path": "stacks/net", "apply": "auto"})
    return Entry(
        id=entry_id(Kind.STACK, name), kind=Kind.STACK, name=name, spec=spec,
        spec_hash=SpecHash(hashlib.sha256(name.encode()).hexdigest()),
        location=Location(path=f"stacks/{name}.yaml"), timeout_seconds=600,
    )


def test_a_stack_runs_result_line_is_read_from_its_pod(
        make_executor: Make, driver: JobDriver) -> None:
    options = KubernetesOptions(namespace=NAMESPACE, source_url="https://example.com/r.git")
    executor = make_executor(options=options)
    entry = stack_entry("net")
    request = request_for(entry).model_copy(update={
        "operation": Operation.PLAN, "run_id": request_for(entry, salt="plan").run_id,
        "trigger": Trigger.DRIFT})
    executor.submit(request)
    pod = driver.start_pod(request.run_id)
    driver.container_state(pod, "clone", {"terminated": {"exitCode": 0}}, "Pending")
    driver.write_log(pod, "clone", "checked out abc (abc)\n")
    result: dict[str, Any] = {"engine": "opentofu", "operation": "plan",
                              "changes": {"add": 1, "change": 0, "destroy": 0}}
    driver.write_log(pod, "run", f"Plan: 1 to add\n{RESULT_MARKER} {json.dumps(result)}\n")
    driver.finish(request.run_id, pod)

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.SUCCEEDED
    assert (report.operation, report.trigger) == (Operation.PLAN, Trigger.DRIFT)
    assert report.result == StackResult.from_result(result)
    assert report.log_tail == "Plan: 1 to add"
    assert executor.logs(request.run_id).startswith("checked out abc (abc)\nPlan: 1 to add")


def test_deadline_and_failure_reasons_come_from_job_conditions(
        make_executor: Make, driver: JobDriver) -> None:
    executor = make_executor()
    timed = request_for(task_entry("deadline", ["true"], timeout="5m"))
    policy = request_for(task_entry("policy", ["true"]))
    for request in (timed, policy):
        executor.submit(request)
    pod = driver.start_pod(timed.run_id)
    driver.finish(timed.run_id, pod, exit_code=137, reason="DeadlineExceeded")
    pod = driver.start_pod(policy.run_id)
    driver.finish(policy.run_id, pod, exit_code=42, reason="PodFailurePolicy")

    report = wait_for_run(executor, timed.run_id)
    assert (report.state, report.message) == (RunState.TIMED_OUT, "timed out after 300s")
    report = wait_for_run(executor, policy.run_id)
    assert report.state is RunState.FAILED
    assert report.exit_code == 42
    assert report.message == "failed: PodFailurePolicy; exit code 42"


def test_the_daemons_executor_from_its_settings(
        apiserver: RunningApiServer, cluster: LocalCluster, tmp_path: Path) -> None:
    own = KubernetesSettings(namespace=NAMESPACE,
                             kubeconfig=apiserver.write_kubeconfig(tmp_path / "kubeconfig"))
    settings = Settings(repo="https://git.example.com/org/declarations.git",
                        executor="kubernetes", executor_settings=(own,),
                        leader_election_id="blue", max_parallel=3)
    executor = KubernetesExecutor.from_settings(settings, start_grace=0.2, log_interval=0)
    try:
        assert executor.options.source_url == settings.repo
        assert executor.free_slots() == 3
        request = request_for(task_entry("configured", ["sh", "-c", "echo configured"]))
        executor.submit(request)
        report = wait_for_run(executor, request.run_id)
        assert report.state is RunState.SUCCEEDED
        assert JobDriver(apiserver, NAMESPACE).job(request.run_id)["metadata"]["labels"][
            lbl.INSTANCE] == "blue"
    finally:
        executor.close()


def test_the_logs_command_reads_the_newest_run_of_an_entry(
        apiserver: RunningApiServer, cluster: LocalCluster, make_executor: Make) -> None:
    executor = make_executor()
    entry = task_entry("reported", ["sh", "-c", "echo run $RECONCILER_ATTEMPT"])
    first, second = request_for(entry), request_for(entry, attempt=2)
    for request in (first, second):
        executor.submit(request)
        wait_for_run(executor, request.run_id)

    text = latest_log(entry.id, namespace=NAMESPACE, api_client=apiserver.client())

    assert text == (f"# {second.run_id}: run Succeeded (attempt 2, commit "
                    f"{second.revision[:12]})\nrun 2\n")
    assert latest_log(entry_id(Kind.TASK, "never"), namespace=NAMESPACE,
                      api_client=apiserver.client()) is None


def test_a_timed_out_run_keeps_the_lines_it_printed(
        cluster: LocalCluster, make_executor: Make, driver: JobDriver) -> None:
    executor = make_executor()
    request = request_for(task_entry("too-slow", ["sh", "-c", "echo working; sleep 30"],
                                     timeout="1s"))
    executor.submit(request)
    running(executor, request, "working")

    report = wait_for_run(executor, request.run_id)

    assert report.state is RunState.TIMED_OUT
    assert report.message == "timed out after 1s"
    assert driver.pods(request.run_id) == []  # deleted at the deadline, logs and all
    assert report.log_tail == "working"


def test_a_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubernetesConfigError, match=r"--kubeconfig .*/absent"):
        connect(tmp_path / "absent")
