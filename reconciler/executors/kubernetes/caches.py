"""The Jobs and pods of a daemon's runs, per namespace, each kind kept by an informer.

A namespace is known once both its informers have listed; one the API server forbids is
`denied` (with the reason to tell its runs) and known to hold nothing; one that has not
answered yet is left out until it does. Only when no namespace at all is known or denied is the
API server taken to be unreachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.client import forbidden_in
from reconciler.executors.kubernetes.informer import Informer
from reconciler.types import RunId


class KubernetesUnavailableError(ConnectionError):
    """The API server has not answered a list yet: the executor cannot tell what runs."""


class RunCaches:
    def __init__(self, *, batch: Any, core: Any, instance: str, watch_timeout: int,
                 denied_delay: float = 30.0) -> None:
        self._batch = batch
        self._core = core
        self._selector = lbl.selector(instance)
        self._watch_timeout = watch_timeout
        self._denied_delay = denied_delay
        self._lock = threading.Lock()
        self._informers: dict[str, tuple[Informer, Informer]] = {}

    def watch(self, namespace: str) -> None:
        with self._lock:
            if namespace in self._informers:
                return
            pair = (
                Informer(list_function=self._batch.list_namespaced_job, namespace=namespace,
                         label_selector=self._selector, kind="jobs",
                         watch_timeout=self._watch_timeout, denied_delay=self._denied_delay),
                Informer(list_function=self._core.list_namespaced_pod, namespace=namespace,
                         label_selector=self._selector, kind="pods",
                         watch_timeout=self._watch_timeout, denied_delay=self._denied_delay),
            )
            self._informers[namespace] = pair
        for informer in pair:
            informer.start()

    def unwatch(self, namespace: str) -> None:
        with self._lock:
            pair = self._informers.pop(namespace, None)
        for informer in pair or ():
            informer.stop()

    def namespaces(self) -> list[str]:
        with self._lock:
            return list(self._informers)

    def informers(self, namespace: str) -> tuple[Informer, Informer]:
        return self._informers[namespace]

    def denied(self, namespace: str, *, wait: float = 0.0) -> str | None:
        """Why the daemon may not use `namespace`, or None; waits up to `wait` seconds for
        its first answer."""
        pair = self._informers.get(namespace)
        if pair is None:
            return None
        deadline = time.monotonic() + wait
        for informer in pair:
            informer.wait_resolved(max(0.0, deadline - time.monotonic()))
            if informer.denied is not None:
                return forbidden_in(namespace, informer.denied, verb="list",
                                    resource=informer.kind)
        return None

    def _all(self) -> list[Informer]:
        with self._lock:
            return [i for pair in self._informers.values() for i in pair]

    def wait_synced(self, timeout: float) -> None:
        """Wait (together at most `timeout`) for every namespace's first answer; raise when
        no namespace answered at all."""
        deadline = time.monotonic() + timeout
        informers = self._all()
        silent = [i for i in informers
                  if not i.wait_resolved(max(0.0, deadline - time.monotonic()))]
        if informers and len(silent) == len(informers):
            raise KubernetesUnavailableError(
                f"no answer from the Kubernetes API: cannot list {silent[0].kind} in "
                f"namespace {silent[0].namespace}")

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
