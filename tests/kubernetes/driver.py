"""Acting as the Job controller and the kubelet by hand, through the API, for states the local
cluster does not reach on its own (an image that cannot be pulled, a stack runner's output)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from kubernetes.client import (
    BatchV1Api,
    CoordinationV1Api,
    CoreV1Api,
    RbacAuthorizationV1Api,
    V1Pod,
)

from reconciler.executors.kubernetes.access import AccessApis
from tests.kubernetes.apimachinery import now_rfc3339
from tests.kubernetes.server import RunningApiServer

MERGE = "application/merge-patch+json"


class JobDriver:
    def __init__(self, api: RunningApiServer, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        client = api.client()
        self.batch = BatchV1Api(client)
        self.core = CoreV1Api(client)
        self.access = AccessApis(core=self.core, rbac=RbacAuthorizationV1Api(client),
                                 coordination=CoordinationV1Api(client))

    def job(self, name: str) -> dict[str, Any]:
        response = self.batch.read_namespaced_job(name, self.namespace, _preload_content=False)
        value: dict[str, Any] = json.loads(response.data)
        return value

    def jobs(self) -> list[str]:
        response = self.batch.list_namespaced_job(self.namespace, _preload_content=False)
        return sorted(j["metadata"]["name"] for j in json.loads(response.data)["items"])

    def pods(self, job: str | None = None) -> list[dict[str, Any]]:
        selector = f"batch.kubernetes.io/job-name={job}" if job else None
        response = self.core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                 _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def start_pod(self, job_name: str) -> str:
        """Create the Job's next pod, as the Job controller does."""
        job = self.job(job_name)
        meta = job["metadata"]
        template = job["spec"]["template"]
        pod = {
            "metadata": {
                "name": f"{meta['name']}-{uuid.uuid4().hex[:5]}",
                "labels": {**template["metadata"]["labels"],
                           "batch.kubernetes.io/job-name": meta["name"]},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                     "name": meta["name"], "uid": meta["uid"],
                                     "controller": True}],
            },
            "spec": template["spec"],
        }
        created = self.core.create_namespaced_pod(self.namespace, V1Pod.from_dict(pod),
                                                  _preload_content=False)
        name: str = json.loads(created.data)["metadata"]["name"]
        self.job_status(job_name, startTime=now_rfc3339(), active=1)
        return name

    def container_state(self, pod: str, container: str, state: dict[str, Any],
                        phase: str) -> None:
        status = {"name": container, "state": state, "ready": "running" in state,
                  "restartCount": 0, "image": "image", "imageID": ""}
        key = "initContainerStatuses" if container == "clone" else "containerStatuses"
        self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": {
            "phase": phase, key: [status]}}, _content_type=MERGE)

    def write_log(self, pod: str, container: str, text: str) -> None:
        self.api.call(self.api.server.write_log, self.namespace, pod, container, text)

    def job_status(self, name: str, **status: Any) -> None:
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status},
                                               _content_type=MERGE)

    def finish(self, name: str, pod: str, *, exit_code: int = 0,
               reason: str = "BackoffLimitExceeded") -> None:
        """The pod's main container exits, and the Job controller concludes."""
        now = now_rfc3339()
        terminated = {"terminated": {"exitCode": exit_code, "finishedAt": now,
                                     "reason": "Completed" if exit_code == 0 else "Error"}}
        self.container_state(pod, "run", terminated, "Succeeded" if exit_code == 0 else "Failed")
        if exit_code == 0:
            conditions = [_condition("SuccessCriteriaMet", "CompletionsReached"),
                          _condition("Complete", "CompletionsReached")]
            self.job_status(name, active=0, succeeded=1, completionTime=now,
                            conditions=conditions)
        else:
            conditions = [_condition("FailureTarget", reason), _condition("Failed", reason)]
            self.job_status(name, active=0, failed=1, conditions=conditions)


def _condition(kind: str, reason: str) -> dict[str, Any]:
    now = now_rfc3339()
    return {"type": kind, "status": "True", "reason": reason, "message": "",
            "lastProbeTime": now, "lastTransitionTime": now}
