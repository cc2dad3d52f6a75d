"""The API emulator answers as the Kubernetes API documents it, through the official client:
the behaviour the executor and leader election rely on is pinned here, so their tests mean
what they would mean against a real API server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import urllib3
from kubernetes.client import (
    BatchV1Api,
    CoordinationV1Api,
    CoreV1Api,
    V1ConfigMap,
    V1Job,
    V1Pod,
)
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from reconciler.executors.kubernetes.client import request_json
from tests.kubernetes.conftest import NAMESPACE
from tests.kubernetes.server import RunningApiServer

MERGE = "application/merge-patch+json"


def message(err: ApiException) -> str:
    return str(json.loads(err.body)["message"])


def raw(response: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(response.data)
    return value


def config_map(core: CoreV1Api, name: str, **labels: str) -> dict[str, Any]:
    body = V1ConfigMap.from_dict({"metadata": {"name": name, "labels": labels},
                                  "data": {"k": "v"}})
    return raw(core.create_namespaced_config_map(NAMESPACE, body, _preload_content=False))


def job(batch: BatchV1Api, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "run", "image": "busybox", "command": ["true"]}]}}},
        **extra,
    }
    return raw(batch.create_namespaced_job(NAMESPACE, V1Job.from_dict(body),
                                           _preload_content=False))


def pod(core: CoreV1Api, name: str, owner: dict[str, Any] | None = None,
        containers: tuple[str, ...] = ("run",)) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job",
                                    "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"]}]
    body = {"metadata": meta, "spec": {"containers": [
        {"name": c, "image": "busybox"} for c in containers]}}
    return raw(core.create_namespaced_pod(NAMESPACE, V1Pod.from_dict(body),
                                          _preload_content=False))


def names(listing: Any) -> list[str]:
    return sorted(item["metadata"]["name"] for item in raw(listing)["items"])


def test_created_objects_get_server_fields_and_names_are_unique(core: CoreV1Api) -> None:
    first = config_map(core, "one")
    meta = first["metadata"]
    assert meta["uid"]
    assert meta["resourceVersion"].isdigit()
    assert meta["creationTimestamp"].endswith("Z")
    second = config_map(core, "two")
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    with pytest.raises(ApiException) as caught:
        config_map(core, "one")
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["reason"] == "AlreadyExists"


def test_a_namespace_must_exist(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("nowhere", V1ConfigMap.from_dict(
            {"metadata": {"name": "x"}}))
    assert caught.value.status == 404
    assert message(caught.value) == 'namespaces "nowhere" not found'


def test_label_and_field_selectors_filter_lists(core: CoreV1Api) -> None:
    config_map(core, "a", app="web", tier="front")
    config_map(core, "b", app="web", tier="back")
    config_map(core, "c", app="db")

    def listed(**query: str) -> list[str]:
        return names(core.list_namespaced_config_map(NAMESPACE, _preload_content=False, **query))

    assert listed(label_selector="app=web") == ["a", "b"]
    assert listed(label_selector="app=web,tier!=front") == ["b"]
    assert listed(label_selector="tier in (front, back)") == ["a", "b"]
    assert listed(label_selector="tier notin (front)") == ["b", "c"]
    assert listed(label_selector="tier") == ["a", "b"]
    assert listed(label_selector="!tier") == ["c"]
    assert listed(field_selector="metadata.name=c") == ["c"]
    with pytest.raises(ApiException) as caught:
        listed(field_selector="spec.nodeName=x")
    assert caught.value.status == 400


def test_replace_is_optimistic(client: Any) -> None:
    api = CoordinationV1Api(client)
    body = {"metadata": {"name": "lock"}, "spec": {"holderIdentity": "a"}}
    created = raw(api.create_namespaced_lease(NAMESPACE, body, _preload_content=False))
    stale = dict(created, spec={"holderIdentity": "b"})
    current = raw(api.replace_namespaced_lease("lock", NAMESPACE, stale, _preload_content=False))
    assert current["spec"]["holderIdentity"] == "b"

    with pytest.raises(ApiException) as caught:
        api.replace_namespaced_lease("lock", NAMESPACE, dict(created, spec={"holderIdentity": "c"}))
    assert caught.value.status == 409
    assert "the object has been modified" in message(caught.value)
    with pytest.raises(ApiException) as missing:
        api.replace_namespaced_lease("other", NAMESPACE, {"metadata": {"name": "other"}})
    assert missing.value.status == 404


def test_lease_times_need_microseconds(client: Any) -> None:
    api = CoordinationV1Api(client)
    body = {"metadata": {"name": "lock"},
            "spec": {"holderIdentity": "a", "renewTime": "2030-01-01T00:00:00Z"}}
    with pytest.raises(ApiException) as caught:
        api.create_namespaced_lease(NAMESPACE, body, _preload_content=False)
    assert caught.value.status == 400


def test_invalid_objects_are_refused(client: Any, core: CoreV1Api) -> None:
    # The typed models drop unknown fields; a misspelt one reaches the server as raw JSON.
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bogus"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "run", "image": "x", "comand": ["true"]}]}}}}
    with pytest.raises(ApiException) as bogus:
        request_json(client, "POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", body=body)
    assert bogus.value.status == 422
    assert "comand" in message(bogus.value)

    with pytest.raises(ApiException) as big:
        core.create_namespaced_config_map(NAMESPACE, V1ConfigMap.from_dict(
            {"metadata": {"name": "big"}, "data": {"k": "x" * (1024 * 1024)}}))
    assert big.value.status == 422

    with pytest.raises(ApiException) as label:
        config_map(core, "labelled", app="x" * 64)
    assert label.value.status == 422


def test_immutable_config_maps_keep_their_data(core: CoreV1Api) -> None:
    core.create_namespaced_config_map(NAMESPACE, V1ConfigMap.from_dict(
        {"metadata": {"name": "frozen"}, "immutable": True, "data": {"k": "v"}}))
    owner = {"ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                                  "uid": "1"}]}
    core.patch_namespaced_config_map("frozen", NAMESPACE, {"metadata": owner},
                                     _content_type=MERGE)
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map("frozen", NAMESPACE, {"data": {"k": "w"}},
                                         _content_type=MERGE)
    assert caught.value.status == 422


def test_status_is_a_subresource(batch: BatchV1Api) -> None:
    job(batch, "j")
    batch.patch_namespaced_job("j", NAMESPACE, {"status": {"active": 1},
                                                "metadata": {"labels": {"a": "b"}}},
                               _content_type=MERGE)
    current = raw(batch.read_namespaced_job("j", NAMESPACE, _preload_content=False))
    assert current["status"] == {}
    assert current["metadata"]["labels"] == {"a": "b"}

    batch.patch_namespaced_job_status("j", NAMESPACE, {"status": {"active": 1},
                                                       "metadata": {"labels": {"c": "d"}}},
                                      _content_type=MERGE)
    current = raw(batch.read_namespaced_job("j", NAMESPACE, _preload_content=False))
    assert current["status"] == {"active": 1}
    assert current["metadata"]["labels"] == {"a": "b"}


def test_json_patch_and_its_test_operation(core: CoreV1Api) -> None:
    config_map(core, "p")
    core.patch_namespaced_config_map("p", NAMESPACE, [
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "add", "path": "/data/n", "value": "1"}])
    assert raw(core.read_namespaced_config_map("p", NAMESPACE, _preload_content=False))[
        "data"] == {"k": "v", "n": "1"}
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map("p", NAMESPACE, [
            {"op": "test", "path": "/data/k", "value": "other"}])
    assert caught.value.status == 422


def test_delete_answers_a_status_and_collects_dependents(
        core: CoreV1Api, batch: BatchV1Api) -> None:
    background = job(batch, "background")
    pod(core, "background-pod", background)
    orphaning = job(batch, "orphaning")
    pod(core, "orphaning-pod", orphaning)

    status = raw(batch.delete_namespaced_job("background", NAMESPACE,
                                             propagation_policy="Background",
                                             _preload_content=False))
    assert (status["kind"], status["status"]) == ("Status", "Success")
    assert status["details"]["uid"] == background["metadata"]["uid"]
    batch.delete_namespaced_job("orphaning", NAMESPACE)  # batch/v1 default: Orphan

    left = raw(core.list_namespaced_pod(NAMESPACE, _preload_content=False))["items"]
    assert [p["metadata"]["name"] for p in left] == ["orphaning-pod"]
    assert "ownerReferences" not in left[0]["metadata"]
    with pytest.raises(ApiException) as caught:
        batch.delete_namespaced_job("background", NAMESPACE)
    assert caught.value.status == 404


def test_a_dependent_created_for_an_owner_already_gone_is_collected(
        core: CoreV1Api, batch: BatchV1Api) -> None:
    # A controller that read a Job just before it was deleted creates a pod for it: the
    # garbage collector removes such a pod, as it removes any whose owners are all gone.
    owner = job(batch, "gone-owner")
    batch.delete_namespaced_job("gone-owner", NAMESPACE, propagation_policy="Background")
    pod(core, "late-pod", owner=owner)
    kept = job(batch, "kept-owner")
    pod(core, "kept-pod", owner=kept)

    assert names(core.list_namespaced_pod(NAMESPACE, _preload_content=False)) == ["kept-pod"]


def test_finalizers_hold_a_deletion(core: CoreV1Api) -> None:
    core.create_namespaced_config_map(NAMESPACE, V1ConfigMap.from_dict(
        {"metadata": {"name": "held", "finalizers": ["example.com/keep"]}}))
    marked = raw(core.delete_namespaced_config_map("held", NAMESPACE, _preload_content=False))
    assert marked["metadata"]["deletionTimestamp"]
    core.patch_namespaced_config_map("held", NAMESPACE, {"metadata": {"finalizers": None}},
                                     _content_type=MERGE)
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("held", NAMESPACE)
    assert caught.value.status == 404


def test_pod_logs(apiserver: RunningApiServer, core: CoreV1Api) -> None:
    pod(core, "two", containers=("clone", "run"))
    pod(core, "one")

    def log(name: str, **query: Any) -> str:
        response = core.read_namespaced_pod_log(name, NAMESPACE, _preload_content=False,
                                                **query)
        return bytes(response.data).decode()

    with pytest.raises(ApiException) as waiting:
        log("one")
    assert "waiting to start" in message(waiting.value)
    apiserver.call(apiserver.server.write_log, NAMESPACE, "one", "run", "a\nb\nc\n")
    assert log("one") == "a\nb\nc\n"
    assert log("one", tail_lines=2) == "b\nc\n"
    apiserver.call(apiserver.server.write_log, NAMESPACE, "two", "clone", "cloned\n")
    with pytest.raises(ApiException) as ambiguous:
        log("two")
    assert "a container name must be specified" in message(ambiguous.value)
    assert log("two", container="clone") == "cloned\n"
    with pytest.raises(ApiException) as unknown:
        log("two", container="sidecar")
    assert unknown.value.status == 400


def watch(core: CoreV1Api, **query: Any) -> Any:
    return core.list_namespaced_config_map(NAMESPACE, watch=True, _preload_content=False,
                                           _request_timeout=10, **query)


def read_events(response: Any, count: int) -> list[dict[str, Any]]:
    events = []
    for line in iter_resp_lines(response):
        events.append(json.loads(line))
        if len(events) == count:
            break
    response.close()
    return events


def test_watch_resumes_from_a_version_and_expires_after_compaction(
        apiserver: RunningApiServer, core: CoreV1Api) -> None:
    first = config_map(core, "first")
    config_map(core, "second")
    core.delete_namespaced_config_map("first", NAMESPACE)

    events = read_events(watch(core, resource_version=first["metadata"]["resourceVersion"]), 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "second"), ("DELETED", "first")]

    apiserver.call(apiserver.server.compact)
    expired = read_events(watch(core, resource_version=first["metadata"]["resourceVersion"]), 1)
    assert expired[0]["type"] == "ERROR"
    assert expired[0]["object"]["code"] == 410


def test_watch_sees_objects_leave_and_enter_its_selector(core: CoreV1Api) -> None:
    config_map(core, "moving", app="web")
    response = watch(core, label_selector="app=web", resource_version="0")
    core.patch_namespaced_config_map("moving", NAMESPACE, {"metadata": {"labels": {
        "app": "db"}}}, _content_type=MERGE)
    core.patch_namespaced_config_map("moving", NAMESPACE, {"metadata": {"labels": {
        "app": "web"}}}, _content_type=MERGE)
    config_map(core, "unrelated", app="db")
    events = read_events(response, 3)
    assert [e["type"] for e in events] == ["ADDED", "DELETED", "ADDED"]


def test_watch_ends_at_its_timeout_and_drops_like_a_cut_connection(
        apiserver: RunningApiServer, core: CoreV1Api) -> None:
    started = time.monotonic()
    response = watch(core, timeout_seconds=1, resource_version="0")
    assert list(iter_resp_lines(response)) == []
    assert 0.8 < time.monotonic() - started < 5

    response = watch(core, resource_version="0")
    config_map(core, "seen")
    lines = iter_resp_lines(response)
    assert json.loads(next(lines))["object"]["metadata"]["name"] == "seen"
    assert apiserver.call(apiserver.server.drop_watches) == 1
    with pytest.raises(urllib3.exceptions.ProtocolError):
        next(lines)
