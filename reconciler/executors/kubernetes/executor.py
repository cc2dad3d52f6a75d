"""`KubernetesExecutor`: the executor protocol (`executors/base.py`) over batch/v1 Jobs.

- `submit` creates the run's ConfigMap and Job (`manifests`, `jobs`). A Job that already
  exists is adopted, never duplicated. An entry that cannot run as declared, or objects the API
  server refuses (403, a missing namespace, 422), make a failed run; while the API server
  cannot be reached the run stays Pending and is created on a later `poll`.
- `poll` reads caches kept by list + watch (`informer`) and derives each run's state from its
  Job and pods (`phases`). Log tails come from the run's newest pod: a running run's at most
  every `log_interval` seconds, a finished run's once (with a stack's result line). A pod that
  cannot start (a missing Secret or key, a bad image) fails the run after `start_grace`: the
  Job is annotated with the reason and suspended, which removes the pod and keeps the record.
- `acknowledge` annotates the Job as recorded, so a restarted daemon does not report it again;
  a Job the executor suspended is deleted then, as it would never finish by itself.
- `cancel` reports the run Failed ("cancelled") at once and deletes its Job with background
  propagation; its pods and ConfigMap go with it.
- A namespace RBAC keeps the daemon out of (403 on list, watch or create) fails the runs that
  go there, saying so, and nothing else: the other namespaces' runs start and finish, and the
  namespace is asked again every `denied_retry` seconds, so it recovers once allowed. `expect`
  stops watching namespaces nothing declared or in flight uses any more.

RBAC of the daemon: jobs (create, get, list, watch, patch, delete), pods (list, watch),
pods/log (get), configmaps (create, patch), secrets (get) for masking (`secretmask`), and what
a stack's access objects take (`access`): serviceaccounts, secrets and leases (create), roles
and rolebindings (create, update), and what the stack Role grants (secrets and leases: get,
update).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client import (
    ApiClient,
    BatchV1Api,
    CoordinationV1Api,
    CoreV1Api,
    RbacAuthorizationV1Api,
)
from loguru import logger

from reconciler.declarations.entries import Entry
from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.access import AccessApis
from reconciler.executors.kubernetes.adapter import KubernetesSettings
from reconciler.executors.kubernetes.caches import KubernetesUnavailableError, RunCaches
from reconciler.executors.kubernetes.client import connect, forbidden_in
from reconciler.executors.kubernetes.guards import token_account
from reconciler.executors.kubernetes.informer import Informer
from reconciler.executors.kubernetes.jobs import (
    Outcome,
    create_run,
    delete_job,
    fail_job,
    job_gone,
    mark_recorded,
    own_config_map,
)
from reconciler.executors.kubernetes.lastlog import latest_log
from reconciler.executors.kubernetes.manifests import (
    KubernetesOptions,
    ManifestError,
    build_manifests,
    run_namespace,
)
from reconciler.executors.kubernetes.phases import (
    IMMEDIATE_REASONS,
    Observation,
    observe,
    secret_refs,
)
from reconciler.executors.kubernetes.podlogs import LogTails, PodLogs
from reconciler.executors.kubernetes.runs import (
    Tracked,
    fail,
    newest_of_each_version,
    observed,
    synthetic,
)
from reconciler.executors.kubernetes.secretmask import SecretMasker
from reconciler.redact import redactor
from reconciler.runs import RunReport, RunRequest
from reconciler.settings import Settings
from reconciler.types import EntryId, RunId, RunState, SpecHash

__all__ = ["KubernetesExecutor", "KubernetesUnavailableError", "latest_log"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        log_interval: float = 10.0,
        watch_timeout: int = 300,
        sync_timeout: float = 10.0,
        denied_retry: float = 30.0,
        mask_secrets: bool = True,
        redact: Callable[[str], str] = redactor,
        register_secret: Callable[..., None] = redactor.add,
        owns_client: bool = False,
    ) -> None:
        self.options = options or KubernetesOptions()
        self._api = api_client
        self._owns_client = owns_client
        # Any: with `_preload_content=False` the typed methods return raw responses.
        self._batch: Any = BatchV1Api(api_client)
        self._core: Any = CoreV1Api(api_client)
        self._access = AccessApis(core=self._core, rbac=RbacAuthorizationV1Api(api_client),
                                  coordination=CoordinationV1Api(api_client))
        self._max_parallel = max_parallel
        self._clock = clock
        self._start_grace = timedelta(seconds=start_grace)
        self._retry_delay = timedelta(seconds=retry_delay)
        self._sync_timeout = sync_timeout
        self._redact = redact
        self._logs = PodLogs(self._core, redact=redact)
        self._masker = SecretMasker(self._core, register=register_secret, enabled=mask_secrets)
        self._tails = LogTails(self._logs, self._masker, interval=log_interval, redact=redact)
        self._lock = threading.RLock()
        self._caches = RunCaches(batch=self._batch, core=self._core,
                                 instance=self.options.instance, watch_timeout=watch_timeout,
                                 denied_delay=denied_retry)
        self._runs: dict[RunId, Tracked] = {}
        self._recorded: set[RunId] = set()
        self._resubmitted: set[RunId] = set()
        self._unmarked: dict[RunId, str] = {}
        self.watch_namespace(self.options.namespace)

    @classmethod
    def connect(
        cls, options: KubernetesOptions, *, kubeconfig: Path | None = None, **kwargs: Any
    ) -> KubernetesExecutor:
        """An executor on a client of its own: the kubeconfig when given, else in-cluster."""
        return cls(api_client=connect(kubeconfig), options=options, owns_client=True, **kwargs)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, source_credentials_secret: str | None = None, **kwargs: Any
    ) -> KubernetesExecutor:
        """The daemon's executor: runs in `--namespace` (or the Defaults namespace), labelled
        with `--leader-election-id` (two deployments sharing a namespace need distinct Leases
        anyway, so the id also keeps their runs apart); stack pods clone `--repo`."""
        own = settings.of(KubernetesSettings)
        options = KubernetesOptions(
            namespace=own.namespace, instance=settings.leader_election_id,
            source_url=settings.repo,
            source_credentials_secret=source_credentials_secret
            or own.source_credentials_secret,
            daemon_service_account=token_account(), engine_fallback=own.engine_fallback,
            **({"runner_image": own.runner_image} if own.runner_image else {}))
        return cls.connect(options, kubeconfig=own.kubeconfig,
                           max_parallel=settings.max_parallel, **kwargs)

    def watch_namespace(self, namespace: str) -> None:
        """Observe runs in `namespace` too. Call it at start for a Defaults namespace other
        than the daemon's own, so a restarted daemon finds the runs there."""
        self._caches.watch(namespace)

    def informers(self, namespace: str) -> tuple[Informer, Informer]:
        return self._caches.informers(namespace)

    def namespaces(self) -> list[str]:
        """The namespaces whose runs are watched."""
        return self._caches.namespaces()

    # -- the protocol ----------------------------------------------------------------------

    def expect(self, entries: Sequence[Entry]) -> None:
        """Watch every namespace the declared entries run in (Defaults may name another than
        --namespace), so their Jobs are found after a restart; stop watching the namespaces
        that neither they, nor a run not yet recorded, use any more."""
        wanted = {run_namespace(entry, self.options) for entry in entries}
        with self._lock:
            in_use = {run.namespace for run in self._runs.values()} | set(
                self._unmarked.values())
        for namespace in wanted:
            self.watch_namespace(namespace)
        for namespace in self._caches.namespaces():
            if namespace not in wanted | in_use | {self.options.namespace}:
                logger.info("no longer watching namespace {}", namespace)
                self._caches.unwatch(namespace)

    def free_slots(self) -> int:
        try:
            self._wait_synced()
        except KubernetesUnavailableError:
            return 0  # what runs is unknown: start nothing
        with self._lock:
            active = sum(1 for run in self._runs.values() if run.manifests is not None)
            for _, job in self._caches.jobs():
                meta = lbl.RunMeta.from_object(job)
                if meta is None or self._hidden(meta.run_id, job):
                    continue
                run = self._runs.get(meta.run_id)
                if (run is None or run.final is None) and not observe(job, []).state.finished:
                    active += 1
        return max(0, self._max_parallel - active)

    def submit(self, request: RunRequest) -> None:
        run_id = request.run_id
        namespace = run_namespace(request.entry, self.options)
        try:
            manifests = build_manifests(request, self.options)
        except ManifestError as err:
            logger.warning("{} cannot run on Kubernetes: {}", request.entry.id, err)
            with self._lock:
                if run_id not in self._runs:
                    run = Tracked(namespace=namespace, request=request)
                    run.final = self._make(request, RunState.FAILED, str(err))
                    self._runs[run_id] = run
            return
        self.watch_namespace(manifests.namespace)
        denied = self._caches.denied(manifests.namespace, wait=self._sync_timeout)
        with self._lock:
            if denied is not None and run_id not in self._runs:
                logger.warning("{} cannot start: {}", request.entry.id, denied)
                run = self._runs[run_id] = Tracked(namespace=manifests.namespace, request=request)
                fail(run, denied, self._clock())
                return
            self._recorded.discard(run_id)
            self._resubmitted.add(run_id)
            if run_id in self._runs:
                return
            run = Tracked(namespace=manifests.namespace, request=request, manifests=manifests)
            self._runs[run_id] = run
            if self._caches.job(manifests.namespace, run_id) is not None:
                logger.info("adopting {} ({})", run_id, request.entry.id)
                run.manifests = None
                return
            self._create(run_id, run)

    def flush(self) -> None:
        """Every submit creates its Job at once."""

    def on_change(self, callback: Callable[[], None]) -> bool:
        """Run ends are seen by polling the informers' caches."""
        return False

    def poll(self) -> Sequence[RunReport]:
        self._wait_synced()
        with self._lock:
            now = self._clock()
            for run_id, run in list(self._runs.items()):
                if run.manifests is not None and run.due is not None and run.due <= now:
                    self._create(run_id, run)
                if run.owner_of is not None and own_config_map(self._core, run.owner_of):
                    run.owner_of = None
                if run.delete:
                    run.delete = not delete_job(self._batch, run_id, run.namespace)
            for run_id, namespace in list(self._unmarked.items()):
                self._mark_recorded(run_id, namespace)
            return self._collect()

    def acknowledge(self, run_ids: Sequence[RunId]) -> None:
        with self._lock:
            for run_id in run_ids:
                run = self._runs.get(run_id)
                if run is None or run.final is None:
                    continue  # unknown, or not finished: nothing to record yet
                del self._runs[run_id]
                self._recorded.add(run_id)
                self._resubmitted.discard(run_id)
                self._mark_recorded(run_id, run.namespace)

    def latest(
        self, versions: Mapping[EntryId, SpecHash], known: Collection[RunId] = ()
    ) -> Sequence[RunReport]:
        """From the Jobs in the informers' caches (finished Jobs stay until their TTL);
        only the logs of the runs returned are read."""
        self._wait_synced()
        with self._lock:
            found = []
            for namespace, job in self._caches.jobs():
                meta = lbl.RunMeta.from_object(job)
                if meta is None or versions.get(meta.entry_id) != meta.spec_hash:
                    continue
                state = observe(job, self._caches.pods_of(meta.run_id, namespace)).state
                if state.finished:
                    found.append((meta, state, (namespace, meta, job)))
            return [self._report(self._runs.get(meta.run_id) or Tracked(namespace=namespace),
                                 meta, job)
                    for namespace, meta, job in newest_of_each_version(found)
                    if meta.run_id not in known]

    def logs(self, run_id: RunId) -> str:
        self._wait_synced()
        with self._lock:
            run = self._runs.get(run_id)
            namespace = run.namespace if run is not None else self._caches.find(run_id)
            if namespace is None:
                return ""
            job = self._caches.job(namespace, run_id)
            pods = self._caches.pods_of(run_id, namespace)
        if job is not None:
            withheld = self._masker.mask(namespace, secret_refs(job))
            if withheld is not None:
                return f"(log withheld: {self._redact(withheld)})\n"
        return self._logs.full(namespace, pods)

    def cancel(self, run_id: RunId) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                namespace = self._caches.find(run_id)
                if namespace is None:
                    return
                run = self._runs[run_id] = Tracked(namespace=namespace)
            if run.final is not None:
                return
            created = run.manifests is None  # else there is no Job to delete yet
            fail(run, "cancelled", self._clock())
            if not created:
                return
            logger.info("cancelling {}", run_id)
            run.delete = not delete_job(self._batch, run_id, run.namespace)

    def close(self) -> None:
        self._caches.stop()
        if self._owns_client:
            self._api.close()  # type: ignore[no-untyped-call]

    # -- submitting ------------------------------------------------------------------------

    def _create(self, run_id: RunId, run: Tracked) -> None:
        assert run.manifests is not None
        assert run.request is not None
        manifests = run.manifests
        submission = create_run(self._batch, manifests, access=self._access,
                                instance=self.options.instance)
        if submission.outcome is Outcome.WAIT:
            run.due = self._clock() + self._retry_delay
            run.waiting = self._redact(f"waiting for the Kubernetes API: {submission.message}")
            logger.warning("cannot start {} yet: {}", run_id, run.waiting)
            return
        run.manifests = None
        if submission.outcome is Outcome.REFUSED:
            message = self._redact(
                forbidden_in(manifests.namespace, submission.message, verb="create",
                             resource="jobs") if submission.status == 403
                else f"the Kubernetes API refused the run: {submission.message}")
            logger.warning("{}: {}", run.request.entry.id, message)
            run.final = self._make(run.request, RunState.FAILED, message)
            return
        job = submission.job
        assert job is not None
        verb = "started" if submission.outcome is Outcome.CREATED else "adopted"
        logger.info("{} {} ({} {})", verb, run_id, run.request.entry.id,
                    run.request.operation.value)
        self._caches.put(manifests.namespace, job)
        if manifests.config_map is not None and not own_config_map(self._core, job):
            run.owner_of = job

    def _make(self, request: RunRequest, state: RunState, message: str) -> RunReport:
        return synthetic(request, state, message, self._clock())

    # -- observing -------------------------------------------------------------------------

    def _wait_synced(self) -> None:
        self._caches.wait_synced(self._sync_timeout)

    def _hidden(self, run_id: RunId, job: dict[str, Any]) -> bool:
        """Recorded by the daemon already, in this process or before a restart."""
        if run_id in self._recorded:
            return True
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        return lbl.ANNOTATION_ACKNOWLEDGED in annotations and run_id not in self._resubmitted

    def _collect(self) -> list[RunReport]:
        reports: dict[RunId, RunReport] = {}
        present: set[RunId] = set()
        for namespace, job in self._caches.jobs():
            meta = lbl.RunMeta.from_object(job)
            if meta is None:
                continue
            present.add(meta.run_id)
            run = self._runs.get(meta.run_id)
            if run is None:
                if self._hidden(meta.run_id, job):
                    continue
                run = self._runs[meta.run_id] = Tracked(namespace=namespace)
            reports[meta.run_id] = self._report(run, meta, job)
        for run_id, run in self._runs.items():
            if run_id in reports:
                continue
            if run.final is None:
                self._fail_if_denied(run)
            if run.final is not None:
                reports[run_id] = run.final
            elif run.manifests is not None and run.request is not None:
                reports[run_id] = self._make(run.request, RunState.PENDING, run.waiting)
            elif run.last is not None:
                # The cache may lag a Job written a moment ago: ask before believing it gone.
                gone = job_gone(self._batch, run_id, run.namespace)
                reports[run_id] = self._vanished(run_id, run) if gone else run.last
        self._recorded &= present  # a recorded run is forgotten once its Job is gone
        return list(reports.values())

    def _fail_if_denied(self, run: Tracked) -> None:
        """A run in a namespace the daemon may no longer watch cannot be followed."""
        denied = self._caches.denied(run.namespace)
        if denied is not None:
            fail(run, self._redact(denied), self._clock())

    def _vanished(self, run_id: RunId, run: Tracked) -> RunReport:
        assert run.last is not None
        logger.warning("the Job of {} was deleted before it finished", run_id)
        run.final = run.last.model_copy(update={
            "state": RunState.INTERRUPTED, "finished_at": self._clock(),
            "message": "its Job was deleted before it finished"})
        return run.final

    def _report(self, run: Tracked, meta: lbl.RunMeta, job: dict[str, Any]) -> RunReport:
        if run.final is not None:
            return run.final
        pods = self._caches.pods_of(meta.run_id, run.namespace)
        seen = observe(job, pods)
        if not seen.state.finished:
            seen = self._give_up_if_blocked(run, meta, job, seen)
        log = self._tails.read(run, job, pods, finished=seen.state.finished, now=self._clock())
        report = observed(meta, seen, log, message=self._redact(seen.message),
                          now=self._clock())
        run.last = report
        if seen.state.finished:
            run.final = report
        return report

    def _give_up_if_blocked(
        self, run: Tracked, meta: lbl.RunMeta, job: dict[str, Any], seen: Observation
    ) -> Observation:
        blocked = seen.blocked
        if blocked is None:
            run.blocked_since = None
            return seen
        now = self._clock()
        run.blocked_since = run.blocked_since or now
        if blocked.reason not in IMMEDIATE_REASONS and now - run.blocked_since < self._start_grace:
            return seen
        message = self._redact(blocked.describe(job))
        updated = fail_job(self._batch, meta.run_id, run.namespace, message, now)
        if updated is None:
            return seen
        logger.warning("{} failed: {}", meta.run_id, message)
        self._caches.put(run.namespace, updated)
        return observe(updated, [])

    def _mark_recorded(self, run_id: RunId, namespace: str) -> None:
        self._unmarked.pop(run_id, None)
        job = self._caches.job(namespace, run_id)
        if job is not None and not mark_recorded(self._batch, job):
            self._unmarked[run_id] = namespace
