"""A Job controller and a kubelet for the API emulator, so Jobs really run.

`LocalCluster` watches the Jobs of one namespace through the API (the official client, over
HTTP) and does what the Job controller and the kubelet do, as the executor sees it:

- creates a pod per attempt from the Job's template (labels, owner reference), until a pod
  succeeds or `backoffLimit` is used up (`Failed`/`BackoffLimitExceeded`);
- starts the pod's containers as local processes in their own session: `env` with `$(VAR)`
  expansion, `secretKeyRef` read from Secrets (a missing Secret or key leaves the container
  waiting with `CreateContainerConfigError` and the kubelet's own message), `fieldRef`,
  `configMap` and `emptyDir` volumes as folders, `workingDir` mapped through the mounts;
  output streams into the pod's log as it is written;
- patches pod and Job status (`startTime`, `active`, `succeeded`, `failed`, container states
  with exit codes, the `Complete`/`Failed` conditions) through the `status` subresource;
- enforces `activeDeadlineSeconds` (kills the pods, `Failed`/`DeadlineExceeded`), honours
  `suspend` (deletes the pods, condition `Suspended`), and kills the processes of pods the
  API server deleted (a Job deleted with background propagation).

Images are not pulled: containers run on this machine, so a task's command must exist here.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from tests.kubernetes.apimachinery import now_rfc3339
from tests.kubernetes.server import RunningApiServer

MERGE = "application/merge-patch+json"
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ContainerConfigError(Exception):
    """The kubelet cannot build the container's environment (CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, unknown references stay."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


@dataclass
class PodRun:
    job: str
    pod: str
    root: Path
    process: subprocess.Popen[bytes] | None = None
    container: str = ""
    readers: list[threading.Thread] = field(default_factory=list)
    done: bool = False


class LocalCluster:
    def __init__(self, api: RunningApiServer, namespace: str, root: Path,
                 *, tick: float = 0.03) -> None:
        self.api = api
        self.namespace = namespace
        self.root = root
        client = api.client()
        self.batch = BatchV1Api(client)
        self.core = CoreV1Api(client)
        self._tick = tick
        self._runs: dict[str, PodRun] = {}
        # startTime has whole seconds; deadlines count from when the Job really started.
        self._started: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-cluster", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> LocalCluster:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for run in self._runs.values():
            self._kill(run)

    # -- the control loop ------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as err:  # keep the cluster alive; tests check `errors`
                self.errors.append(err)
            self._stop.wait(self._tick)

    def _raw(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        import json
        response = call(*args, _preload_content=False, **kwargs)
        return json.loads(response.data)

    def _sync(self) -> None:
        jobs = self._raw(self.batch.list_namespaced_job, self.namespace)["items"]
        pods = self._raw(self.core.list_namespaced_pod, self.namespace)["items"]
        live_pods = {p["metadata"]["name"] for p in pods}
        for name, run in list(self._runs.items()):
            if name not in live_pods:
                self._kill(run)
                del self._runs[name]
        by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            job_name = pod["metadata"].get("labels", {}).get("batch.kubernetes.io/job-name")
            if job_name:
                by_job.setdefault(job_name, []).append(pod)
        for job in jobs:
            try:
                self._sync_job(job, by_job.get(job["metadata"]["name"], []))
            except ApiException as err:
                if err.status != 404:  # deleted while being worked on, as controllers see it
                    raise

    def _sync_job(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        name = job["metadata"]["name"]
        status = job.get("status") or {}
        conditions = {c["type"] for c in status.get("conditions") or () if c["status"] == "True"}
        if conditions & {"Complete", "Failed"}:
            return
        spec = job["spec"]
        if spec.get("suspend"):
            for pod in pods:
                self._delete_pod(pod["metadata"]["name"])
            if "Suspended" not in conditions:
                self._job_status(name, {"active": 0, "conditions": [
                    *(status.get("conditions") or ()),
                    self._condition("Suspended", "JobSuspended", "Job suspended")]})
            return
        started = status.get("startTime")
        deadline = spec.get("activeDeadlineSeconds")
        began = self._started.get(job["metadata"]["uid"])
        if began is not None and deadline and time.monotonic() - began > deadline:
            self._fail(job, pods, "DeadlineExceeded", "Job was active longer than specified "
                       "deadline")
            return
        for pod in pods:
            self._sync_pod(job, pod)
        pods = [p for p in self._raw(self.core.list_namespaced_pod, self.namespace,
                                     label_selector=f"batch.kubernetes.io/job-name={name}")["items"]]
        phases = [p.get("status", {}).get("phase") for p in pods]
        failed = phases.count("Failed")
        if "Succeeded" in phases:
            now = now_rfc3339()
            self._job_status(name, {"active": 0, "succeeded": 1, "failed": failed,
                                    "completionTime": now, "conditions": [
                self._condition("SuccessCriteriaMet", "CompletionsReached", ""),
                self._condition("Complete", "CompletionsReached", "")]})
            return
        if failed > spec.get("backoffLimit", 6):
            self._fail(job, pods, "BackoffLimitExceeded", "Job has reached the specified "
                       "backoff limit")
            return
        if not any(phase in ("Pending", "Running") for phase in phases):
            self._started.setdefault(job["metadata"]["uid"], time.monotonic())
            self._create_pod(job)
        self._job_status(name, {"startTime": started or now_rfc3339(), "failed": failed,
                                "active": sum(ph in ("Pending", "Running") for ph in phases)})

    def _fail(self, job: dict[str, Any], pods: list[dict[str, Any]], reason: str,
              message: str) -> None:
        name = job["metadata"]["name"]
        failed = sum(p.get("status", {}).get("phase") == "Failed" for p in pods)
        for pod in pods:
            if pod.get("status", {}).get("phase") in ("Pending", "Running"):
                self._delete_pod(pod["metadata"]["name"])
                failed += 1
        self._job_status(name, {"active": 0, "failed": failed, "conditions": [
            self._condition("FailureTarget", reason, message),
            self._condition("Failed", reason, message)]})

    @staticmethod
    def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
        now = now_rfc3339()
        return {"type": kind, "status": "True", "reason": reason, "message": message,
                "lastProbeTime": now, "lastTransitionTime": now}

    def _job_status(self, name: str, status: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status},
                                               _content_type=MERGE, _preload_content=False)

    def _pod_status(self, name: str, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status},
                                                  _content_type=MERGE, _preload_content=False)
        except ApiException as err:
            if err.status != 404:
                raise

    def _delete_pod(self, name: str) -> None:
        run = self._runs.pop(name, None)
        if run is not None:
            self._kill(run)
        try:
            self.core.delete_namespaced_pod(name, self.namespace, _preload_content=False)
        except ApiException as err:
            if err.status != 404:
                raise

    # -- pods ------------------------------------------------------------------------------

    def _create_pod(self, job: dict[str, Any]) -> None:
        template = job["spec"]["template"]
        job_meta = job["metadata"]
        labels = {**(template.get("metadata") or {}).get("labels", {}),
                  "batch.kubernetes.io/job-name": job_meta["name"],
                  "batch.kubernetes.io/controller-uid": job_meta["uid"]}
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": f"{job_meta['name']}-{uuid.uuid4().hex[:5]}",
                "labels": labels,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                     "name": job_meta["name"], "uid": job_meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": template["spec"],
        }
        created = self._raw(self.core.create_namespaced_pod, self.namespace, pod)
        name = created["metadata"]["name"]
        self._runs[name] = PodRun(job=job_meta["name"], pod=name, root=self.root / name)

    def _sync_pod(self, job: dict[str, Any], pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        run = self._runs.get(name)
        if run is None or run.done:
            return
        if run.process is None:
            self._start(run, pod)
            return
        code = run.process.poll()
        if code is None:
            return
        for reader in run.readers:
            reader.join(timeout=5)
        self._next_container(run, pod, code)

    def _containers(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        spec = pod["spec"]
        return [*(spec.get("initContainers") or ()), *spec["containers"]]

    def _start(self, run: PodRun, pod: dict[str, Any], index: int = 0) -> None:
        container = self._containers(pod)[index]
        run.container = container["name"]
        try:
            env = self._environment(pod, container)
        except ContainerConfigError as err:
            self._pod_status(run.pod, {"phase": "Pending", **self._statuses(
                pod, container["name"], {"waiting": {"reason": "CreateContainerConfigError",
                                                     "message": str(err)}})})
            return
        mounts = self._mounts(run, pod, container)
        workdir = self._map(container.get("workingDir") or "/", mounts) or run.root
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [expand(a, env) for a in (*container.get("command", ()),
                                         *container.get("args", ()))]
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run.root)}
        run.process = subprocess.Popen(
            argv, cwd=workdir, env={**base, **env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        reader = threading.Thread(target=self._pump, args=(run, run.container), daemon=True)
        reader.start()
        run.readers = [reader]
        phase = "Pending" if index < len(pod["spec"].get("initContainers") or ()) else "Running"
        self._pod_status(run.pod, {"phase": phase, **self._statuses(
            pod, container["name"], {"running": {"startedAt": now_rfc3339()}})})

    def _next_container(self, run: PodRun, pod: dict[str, Any], code: int) -> None:
        containers = self._containers(pod)
        index = [c["name"] for c in containers].index(run.container)
        terminated = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0
                                     else "Error", "finishedAt": now_rfc3339()}}
        if code == 0 and index + 1 < len(containers):
            run.process = None
            self._start(run, pod, index + 1)
            return
        run.done = True
        self._pod_status(run.pod, {"phase": "Succeeded" if code == 0 else "Failed",
                                   **self._statuses(pod, run.container, terminated)})

    def _statuses(self, pod: dict[str, Any], current: str,
                  state: dict[str, Any]) -> dict[str, Any]:
        spec = pod["spec"]
        names = [c["name"] for c in spec.get("initContainers") or ()]
        position = (names + [c["name"] for c in spec["containers"]]).index(current)

        def status(container: dict[str, Any], index: int) -> dict[str, Any]:
            if index < position:
                mine: dict[str, Any] = {"terminated": {"exitCode": 0, "reason": "Completed"}}
            elif index == position:
                mine = state
            else:
                mine = {"waiting": {"reason": "PodInitializing"}}
            return {"name": container["name"], "state": mine, "ready": "running" in mine,
                    "restartCount": 0, "image": container.get("image", ""), "imageID": ""}

        init = [status(c, i) for i, c in enumerate(spec.get("initContainers") or ())]
        main = [status(c, len(init) + i) for i, c in enumerate(spec["containers"])]
        out: dict[str, Any] = {"containerStatuses": main}
        if init:
            out["initContainerStatuses"] = init
        return out

    def _pump(self, run: PodRun, container: str) -> None:
        assert run.process is not None
        assert run.process.stdout is not None
        for line in iter(run.process.stdout.readline, b""):
            self.api.call(self.api.server.write_log, self.namespace, run.pod, container,
                          line.decode("utf-8", errors="replace"))

    def _kill(self, run: PodRun) -> None:
        process = run.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    # -- the container's world -------------------------------------------------------------

    def _environment(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env") or ():
            source = item.get("valueFrom")
            if source is None:
                env[item["name"]] = expand(item.get("value", ""), env)
            elif "secretKeyRef" in source:
                value = self._secret_value(source["secretKeyRef"])
                if value is not None:
                    env[item["name"]] = value
            elif "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                env[item["name"]] = {"metadata.namespace": self.namespace,
                                     "metadata.name": pod["metadata"]["name"]}[path]
        return env

    def _secret_value(self, ref: dict[str, Any]) -> str | None:
        import base64
        try:
            secret = self._raw(self.core.read_namespaced_secret, ref["name"], self.namespace)
        except ApiException as err:
            if err.status == 404 and not ref.get("optional"):
                raise ContainerConfigError(f'secret "{ref["name"]}" not found') from None
            if err.status == 404:
                return None
            raise
        data = secret.get("data") or {}
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(
                f"couldn't find key {ref['key']} in Secret {self.namespace}/{ref['name']}")
        return base64.b64decode(data[ref["key"]]).decode()

    def _mounts(self, run: PodRun, pod: dict[str, Any],
                container: dict[str, Any]) -> dict[str, Path]:
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or ()}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or ():
            volume = volumes[mount["name"]]
            folder = run.root / "volumes" / mount["name"]
            if not folder.exists():
                folder.mkdir(parents=True)
                if "configMap" in volume:
                    self._fill_config_map(folder, volume["configMap"])
            mounts[mount["mountPath"]] = folder
        return mounts

    def _fill_config_map(self, folder: Path, source: dict[str, Any]) -> None:
        config_map = self._raw(self.core.read_namespaced_config_map, source["name"],
                               self.namespace)
        data = config_map.get("data") or {}
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            path = folder / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data[item["key"]])
            path.chmod(item.get("mode", source.get("defaultMode", 0o644)))

    @staticmethod
    def _map(path: str, mounts: dict[str, Path]) -> Path | None:
        for mount_path in sorted(mounts, key=len, reverse=True):
            if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                return mounts[mount_path] / path[len(mount_path):].lstrip("/")
        return None

