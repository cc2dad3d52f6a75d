"""`KubernetesExecutor`: the executor protocol (`executors/base.py`) over batch/v1 Jobs.

- `submit` creates the run's ConfigMap and Job (`manifests`), then makes the Job the
  ConfigMap's owner. A Job that already exists is adopted (409 AlreadyExists is how a restarted
  daemon finds its runs), never duplicated. An entry that cannot run as declared, or a request
  the API server refuses (403, 404 namespace, 422), is reported as a failed run; while the API
  server is unreachable the run stays Pending and is created on a later `poll`.
- `poll` reads caches kept by list + watch (`informer`) and derives each run's state from its
  Job and pods (`phases`). A finished run's log tail (and a stack's result line) is read once
  from its pod. A pod that cannot start (a missing Secret or key, a bad image) fails the run
  after `start_grace`: the Job is annotated with the reason and suspended, which stops the pod.
- `acknowledge` annotates Jobs as recorded, so a restart does not report them again; a Job the
  executor suspended itself is deleted then, since it would never finish.
- `cancel` deletes the Job with background propagation (its pods and ConfigMap follow).

The daemon never reads a Secret here: RBAC needs jobs, pods, pods/log and configmaps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, V1ConfigMap, V1Job
from kubernetes.client.exceptions import ApiException
from loguru import logger

from reconciler.executors.base import (
    RunReport,
    RunRequest,
    parse_result_line,
    strip_result_lines,
    tail,
)
from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.client import (
    MERGE_PATCH,
    connect,
    is_transient,
    message_of,
    read_json,
    status_of,
)
from reconciler.executors.kubernetes.informer import Informer
from reconciler.executors.kubernetes.manifests import (
    KubernetesOptions,
    ManifestError,
    RunManifests,
    build_manifests,
)
from reconciler.executors.kubernetes.phases import (
    IMMEDIATE_REASONS,
    Observation,
    observe,
)
from reconciler.executors.kubernetes.podlogs import PodLogs
from reconciler.redact import redactor
from reconciler.types import RunId, RunState


class KubernetesUnavailableError(ConnectionError):
    """The API server has not answered a list yet: the executor cannot tell what runs."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Waiting:
    """A submission the API server could not take yet."""

    def __init__(self, request: RunRequest, manifests: RunManifests, due: datetime) -> None:
        self.request = request
        self.manifests = manifests
        self.due = due
        self.message = ""


class KubernetesExecutor:
    name = "kubernetes"

    def __init__(
        self,
        *,
        api_client: ApiClient,
        options: KubernetesOptions | None = None,
        max_parallel: int = 4,
        clock: Callable[[], datetime] = _utcnow,
        start_grace: float = 30.0,
        retry_delay: float = 5.0,
        watch_timeout: int = 300,
        sync_timeout: float = 10.0,
        redact: Callable[[str], str] = redactor,
        owns_client: bool = False,
    ) -> None:
        self.options = options or KubernetesOptions()
        self._api = api_client
        self._owns_client = owns_client
        # Any: with `_preload_content=False` the typed methods return raw responses.
        self._batch: Any = BatchV1Api(api_client)
        self._core: Any = CoreV1Api(api_client)
        self._max_parallel = max_parallel
        self._clock = clock
        self._start_grace = timedelta(seconds=start_grace)
        self._retry_delay = timedelta(seconds=retry_delay)
        self._watch_timeout = watch_timeout
        self._sync_timeout = sync_timeout
        self._redact = redact
        self._logs = PodLogs(self._core, redact=redact)
        self._lock = threading.RLock()
        self._informers: dict[str, tuple[Informer, Informer]] = {}
        self._namespace_of: dict[RunId, str] = {}
        self._reports: dict[RunId, RunReport] = {}
        self._final: dict[RunId, RunReport] = {}
        self._waiting: dict[RunId, _Waiting] = {}
        self._blocked_since: dict[RunId, datetime] = {}
        self._cancelled: set[RunId] = set()
        self._acknowledged: set[RunId] = set()
        self._unrecorded: set[RunId] = set()
        self._owners: dict[RunId, dict[str, Any]] = {}
        self.watch_namespace(self.options.namespace)

    @classmethod
    def connect(
        cls, options: KubernetesOptions, *, kubeconfig: Path | None = None, **kwargs: Any
    ) -> KubernetesExecutor:
        """An executor on its own client (in-cluster config, else the kubeconfig)."""
        return cls(api_client=connect(kubeconfig), options=options, owns_client=True, **kwargs)

    def watch_namespace(self, namespace: str) -> None:
        """Observe runs in `namespace` too (a Defaults namespace other than the daemon's own);
        call it at start for every namespace runs may be in, so a restart finds them."""
        with self._lock:
            if namespace in self._informers:
                return
            selector = lbl.selector(self.options.instance)
            jobs = Informer(list_function=self._batch.list_namespaced_job, namespace=namespace,
                            label_selector=selector, kind="jobs",
                            watch_timeout=self._watch_timeout)
            pods = Informer(list_function=self._core.list_namespaced_pod, namespace=namespace,
                            label_selector=selector, kind="pods",
                            watch_timeout=self._watch_timeout)
            self._informers[namespace] = (jobs, pods)
        jobs.start()
        pods.start()

    def informers(self, namespace: str) -> tuple[Informer, Informer]:
        return self._informers[namespace]

    # -- the protocol ----------------------------------------------------------------------

    def free_slots(self) -> int:
        with self._lock:
            active = len(self._waiting)
            for namespace, (jobs, _) in self._informers.items():
                for job in jobs.snapshot().values():
                    meta = lbl.RunMeta.from_object(job)
                    if meta is not None and not self._hidden(meta.run_id, job) and not (
                        observe(job, []).state.finished
                    ):
                        active += 1
                        self._namespace_of.setdefault(meta.run_id, namespace)
        return max(0, self._max_parallel - active)

    def submit(self, request: RunRequest) -> None:
        run_id = request.run_id
        try:
            manifests = build_manifests(request, self.options)
        except ManifestError as err:
            logger.warning("{} cannot run on Kubernetes: {}", request.entry.id, err)
            with self._lock:
                self._final[run_id] = self._synthetic(request, RunState.FAILED, str(err))
                self._reports[run_id] = self._final[run_id]
            return
        self.watch_namespace(manifests.namespace)
        with self._lock:
            self._namespace_of[run_id] = manifests.namespace
            self._acknowledged.discard(run_id)
            self._unrecorded.add(run_id)
            if run_id in self._reports or run_id in self._waiting:
                return
            jobs, _ = self._informers[manifests.namespace]
            if jobs.get(run_id) is not None:
                logger.info("adopting {} ({})", run_id, request.entry.id)
                return
            self._create(request, manifests)

    def poll(self) -> Sequence[RunReport]:
        self._wait_synced()
        with self._lock:
            self._retry_waiting()
            self._retry_owners()
            self._reports = self._collect()
            return list(self._reports.values())

    def acknowledge(self, run_ids: Sequence[RunId]) -> None:
        with self._lock:
            for run_id in run_ids:
                report = self._reports.get(run_id) or self._final.get(run_id)
                if report is None or not report.state.finished:
                    continue
                self._reports.pop(run_id, None)
                self._final.pop(run_id, None)
                self._blocked_since.pop(run_id, None)
                self._cancelled.discard(run_id)
                self._unrecorded.discard(run_id)
                self._acknowledged.add(run_id)
                self._mark_recorded(run_id)

    def logs(self, run_id: RunId) -> str:
        with self._lock:
            namespace = self._namespace_of.get(run_id)
            pods = self._pods_of(run_id, namespace) if namespace else []
        if namespace is None:
            return ""
        return self._logs.full(namespace, pods)

    def cancel(self, run_id: RunId) -> None:
        with self._lock:
            self._cancelled.add(run_id)
            waiting = self._waiting.pop(run_id, None)
            if waiting is not None:
                self._final[run_id] = self._synthetic(
                    waiting.request, RunState.INTERRUPTED, "cancelled before it started")
                return
            namespace = self._namespace_of.get(run_id)
        if namespace is None:
            return
        logger.info("cancelling {}", run_id)
        try:
            self._batch.delete_namespaced_job(
                run_id, namespace, propagation_policy="Background", _preload_content=False)
        except Exception as err:
            if status_of(err) != 404:
                logger.warning("cannot cancel {} yet: {}", run_id, message_of(err))

    def close(self) -> None:
        with self._lock:
            informers = [i for pair in self._informers.values() for i in pair]
        for informer in informers:
            informer.stop()
        if self._owns_client:
            self._api.close()  # type: ignore[no-untyped-call]

    # -- submitting ------------------------------------------------------------------------

    def _create(self, request: RunRequest, manifests: RunManifests) -> None:
        run_id = request.run_id
        namespace = manifests.namespace
        jobs, _ = self._informers[namespace]
        job: dict[str, Any] | None
        try:
            if manifests.config_map is not None:
                self._create_config_map(namespace, manifests.config_map)
            job = read_json(self._batch.create_namespaced_job(
                namespace, V1Job.from_dict(manifests.job), _preload_content=False))
            logger.info("started {} ({} {})", run_id, request.entry.id, request.operation.value)
        except ApiException as err:
            if err.status == 409:
                job = self._adopt(request, namespace)
            elif is_transient(err):
                self._wait(request, manifests, message_of(err))
                return
            else:
                self._refuse(request, err)
                return
        except Exception as err:
            if not is_transient(err):
                raise
            self._wait(request, manifests, message_of(err))
            return
        if job is None:
            return
        self._waiting.pop(run_id, None)
        jobs.put(job)
        if manifests.config_map is not None:
            self._owners[run_id] = job
            self._retry_owners()

    def _create_config_map(self, namespace: str, config_map: dict[str, Any]) -> None:
        try:
            self._core.create_namespaced_config_map(
                namespace, V1ConfigMap.from_dict(config_map), _preload_content=False)
        except ApiException as err:
            if err.status != 409:  # created by an earlier attempt: same run, same content
                raise

    def _adopt(self, request: RunRequest, namespace: str) -> dict[str, Any] | None:
        job = read_json(self._batch.read_namespaced_job(
            request.run_id, namespace, _preload_content=False))
        meta = lbl.RunMeta.from_object(job)
        labels = (job.get("metadata") or {}).get("labels") or {}
        if meta is None or labels.get(lbl.INSTANCE) != self.options.instance:
            message = (f"a Job named {request.run_id} already exists in {namespace} and was "
                       "not created by this reconciler")
            self._final[request.run_id] = self._synthetic(request, RunState.FAILED, message)
            self._waiting.pop(request.run_id, None)
            return None
        logger.info("adopting {} ({})", request.run_id, request.entry.id)
        return job

    def _wait(self, request: RunRequest, manifests: RunManifests, message: str) -> None:
        waiting = self._waiting.get(request.run_id) or _Waiting(request, manifests, self._clock())
        waiting.due = self._clock() + self._retry_delay
        waiting.message = self._redact(f"waiting for the Kubernetes API: {message}")
        self._waiting[request.run_id] = waiting
        logger.warning("cannot start {} yet: {}", request.run_id, waiting.message)

    def _refuse(self, request: RunRequest, err: ApiException) -> None:
        message = self._redact(f"the Kubernetes API refused the run: {message_of(err)}")
        logger.warning("{}: {}", request.entry.id, message)
        self._waiting.pop(request.run_id, None)
        self._final[request.run_id] = self._synthetic(request, RunState.FAILED, message)

    def _retry_waiting(self) -> None:
        now = self._clock()
        for waiting in list(self._waiting.values()):
            if waiting.due <= now:
                self._create(waiting.request, waiting.manifests)

    def _retry_owners(self) -> None:
        """The ConfigMap is garbage-collected with the Job once the Job owns it."""
        for run_id, job in list(self._owners.items()):
            meta = job.get("metadata") or {}
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta.get("name"),
                     "uid": meta.get("uid")}
            try:
                self._core.patch_namespaced_config_map(
                    run_id, meta.get("namespace") or self._namespace_of[run_id],
                    {"metadata": {"ownerReferences": [owner]}},
                    _content_type=MERGE_PATCH, _preload_content=False)
            except Exception as err:
                if is_transient(err):
                    continue
                if status_of(err) != 404:
                    logger.warning("the ConfigMap of {} will outlive its Job: {}", run_id,
                                   message_of(err))
            del self._owners[run_id]

    def _synthetic(self, request: RunRequest, state: RunState, message: str) -> RunReport:
        now = self._clock() if state.finished else None
        return RunReport(
            run_id=request.run_id, entry_id=request.entry.id,
            spec_hash=request.entry.spec_hash, operation=request.operation,
            trigger=request.trigger, attempt=request.attempt, revision=request.revision,
            state=state, finished_at=now, message=message,
        )

    # -- observing -------------------------------------------------------------------------

    def _wait_synced(self) -> None:
        with self._lock:
            informers = [i for pair in self._informers.values() for i in pair]
        for informer in informers:
            if not informer.wait_synced(self._sync_timeout):
                raise KubernetesUnavailableError(
                    f"no answer from the Kubernetes API yet: cannot list {informer.kind} in "
                    f"namespace {informer.namespace}"
                )

    def _hidden(self, run_id: RunId, job: dict[str, Any]) -> bool:
        """Recorded by the daemon already (in this process, or before a restart)."""
        if run_id in self._acknowledged:
            return True
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        return lbl.ANNOTATION_ACKNOWLEDGED in annotations and run_id not in self._unrecorded

    def _pods_of(self, run_id: RunId, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None or namespace not in self._informers:
            return []
        _, pods = self._informers[namespace]
        return [p for p in pods.snapshot().values()
                if ((p.get("metadata") or {}).get("labels") or {}).get(lbl.RUN_ID) == run_id]

    def _collect(self) -> dict[RunId, RunReport]:
        reports: dict[RunId, RunReport] = {}
        present: set[RunId] = set()
        for namespace, (jobs, _) in self._informers.items():
            for job in jobs.snapshot().values():
                meta = lbl.RunMeta.from_object(job)
                if meta is None:
                    continue
                present.add(meta.run_id)
                self._namespace_of.setdefault(meta.run_id, namespace)
                if not self._hidden(meta.run_id, job):
                    reports[meta.run_id] = self._report(meta, job, namespace)
        for run_id, last in {**self._reports, **self._final}.items():
            if run_id in reports or run_id in self._acknowledged:
                continue
            if last.state.finished or run_id in self._waiting or not self._gone(run_id):
                reports[run_id] = last
            else:
                reports[run_id] = self._vanished(last)
        for run_id, waiting in self._waiting.items():
            reports[run_id] = self._synthetic(waiting.request, RunState.PENDING, waiting.message)
        # A recorded run is forgotten once its Job is gone (its TTL ran out, or it was deleted).
        self._acknowledged &= present
        return reports

    def _gone(self, run_id: RunId) -> bool:
        """The cache may lag a Job created a moment ago: ask the API server before believing
        that a run has disappeared."""
        namespace = self._namespace_of.get(run_id)
        if namespace is None:
            return True
        try:
            self._batch.read_namespaced_job(run_id, namespace, _preload_content=False)
        except ApiException as err:
            return status_of(err) == 404
        except Exception:
            return False
        return False

    def _vanished(self, last: RunReport) -> RunReport:
        cancelled = last.run_id in self._cancelled
        message = "cancelled" if cancelled else "its Job was deleted before it finished"
        report = last.model_copy(update={
            "state": RunState.INTERRUPTED, "finished_at": self._clock(), "message": message,
        })
        self._final[last.run_id] = report
        return report

    def _report(self, meta: lbl.RunMeta, job: dict[str, Any], namespace: str) -> RunReport:
        final = self._final.get(meta.run_id)
        if final is not None:
            return final
        pods = self._pods_of(meta.run_id, namespace)
        seen = observe(job, pods)
        if not seen.state.finished:
            seen = self._give_up_if_blocked(meta, job, namespace, seen)
        finished = seen.state.finished
        failed = seen.state in (RunState.FAILED, RunState.TIMED_OUT)
        attempt = meta.attempt + max(0, seen.failed_pods - (1 if failed else 0))
        log = self._logs.tail(namespace, pods) if finished else ""
        report = RunReport(
            run_id=meta.run_id, entry_id=meta.entry_id, spec_hash=meta.spec_hash,
            operation=meta.operation, trigger=meta.trigger, attempt=attempt,
            revision=meta.revision, state=seen.state, started_at=seen.started_at,
            finished_at=seen.finished_at or (self._clock() if finished else None),
            exit_code=seen.exit_code, message=self._redact(seen.message),
            log_tail=tail(strip_result_lines(log)), result=parse_result_line(log),
        )
        if finished:
            self._final[meta.run_id] = report
            self._blocked_since.pop(meta.run_id, None)
        return report

    def _give_up_if_blocked(
        self, meta: lbl.RunMeta, job: dict[str, Any], namespace: str, seen: Observation
    ) -> Observation:
        blocked = seen.blocked
        if blocked is None:
            self._blocked_since.pop(meta.run_id, None)
            return seen
        now = self._clock()
        since = self._blocked_since.setdefault(meta.run_id, now)
        if blocked.reason not in IMMEDIATE_REASONS and now - since < self._start_grace:
            return seen
        message = self._redact(blocked.describe())
        patch = {
            "metadata": {"annotations": {lbl.ANNOTATION_FAILURE: message,
                                         lbl.ANNOTATION_FAILED_AT: now.isoformat()}},
            # Suspending deletes the pod that cannot start; the Job stays, saying why.
            "spec": {"suspend": True},
        }
        try:
            updated = read_json(self._batch.patch_namespaced_job(
                meta.run_id, namespace, patch, _content_type=MERGE_PATCH,
                _preload_content=False))
        except Exception as err:
            logger.warning("cannot mark {} failed yet: {}", meta.run_id, message_of(err))
            return seen
        logger.warning("{} failed: {}", meta.run_id, message)
        self._informers[namespace][0].put(updated)
        return observe(updated, [])

    def _mark_recorded(self, run_id: RunId) -> None:
        namespace = self._namespace_of.get(run_id)
        if namespace is None or namespace not in self._informers:
            return
        job = self._informers[namespace][0].get(run_id)
        if job is None:
            return
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        try:
            if lbl.ANNOTATION_FAILURE in annotations:
                self._batch.delete_namespaced_job(
                    run_id, namespace, propagation_policy="Background", _preload_content=False)
            else:
                self._batch.patch_namespaced_job(
                    run_id, namespace,
                    {"metadata": {"annotations": {lbl.ANNOTATION_ACKNOWLEDGED: "true"}}},
                    _content_type=MERGE_PATCH, _preload_content=False)
        except Exception as err:
            logger.warning("cannot mark {} as recorded: {}", run_id, message_of(err))
