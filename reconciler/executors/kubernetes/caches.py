"""The Jobs and pods of a daemon's runs, per namespace, each kind kept by an informer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.informer import Informer
from reconciler.types import RunId


class KubernetesUnavailableError(ConnectionError):
    """The API server has not answered a list yet: the executor cannot tell what runs."""


class RunCaches:
    def __init__(self, *, batch: Any, core: Any, instance: str, watch_timeout: int) -> None:
        self._batch = batch
        self._core = core
        self._selector = lbl.selector(instance)
        self._watch_timeout = watch_timeout
        self._lock = threading.Lock()
        self._informers: dict[str, tuple[Informer, Informer]] = {}

    def watch(self, namespace: str) -> None:
        with self._lock:
            if namespace in self._informers:
                return
            pair = (
                Informer(list_function=self._batch.list_namespaced_job, namespace=namespace,
                         label_selector=self._selector, kind="jobs",
                         watch_timeout=self._watch_timeout),
                Informer(list_function=self._core.list_namespaced_pod, namespace=namespace,
                         label_selector=self._selector, kind="pods",
                         watch_timeout=self._watch_timeout),
            )
            self._informers[namespace] = pair
        for informer in pair:
            informer.start()

    def informers(self, namespace: str) -> tuple[Informer, Informer]:
        return self._informers[namespace]

    def _all(self) -> list[Informer]:
        with self._lock:
            return [i for pair in self._informers.values() for i in pair]

    def wait_synced(self, timeout: float) -> None:
        for informer in self._all():
            if not informer.wait_synced(timeout):
                raise KubernetesUnavailableError(
                    f"no answer from the Kubernetes API: cannot list {informer.kind} in "
                    f"namespace {informer.namespace}")

    def jobs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(namespace, Job) of every Job in the caches."""
        with self._lock:
            pairs = list(self._informers.items())
        for namespace, (jobs, _) in pairs:
            for job in jobs.snapshot().values():
                yield namespace, job

    def job(self, namespace: str, run_id: RunId) -> dict[str, Any] | None:
        pair = self._informers.get(namespace)
        return pair[0].get(run_id) if pair is not None else None

    def put(self, namespace: str, job: dict[str, Any]) -> None:
        self._informers[namespace][0].put(job)

    def pods_of(self, run_id: RunId, namespace: str) -> list[dict[str, Any]]:
        pair = self._informers.get(namespace)
        if pair is None:
            return []
        return [p for p in pair[1].snapshot().values()
                if ((p.get("metadata") or {}).get("labels") or {}).get(lbl.RUN_ID) == run_id]

    def find(self, run_id: RunId) -> str | None:
        """The namespace a run's Job or pods are in."""
        with self._lock:
            namespaces = list(self._informers)
        for namespace in namespaces:
            if self.job(namespace, run_id) is not None or self.pods_of(run_id, namespace):
                return namespace
        return None

    def stop(self) -> None:
        for informer in self._all():
            informer.stop()
