"""A run's log, read from its newest pod through `pods/log`.

The run's log is its main container's; the clone container's output comes first when there is
one, and alone when the clone failed and the main container never started. Text is redacted
before it leaves this module. A pod or container that is gone or has not started has no log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from kubernetes.client import CoreV1Api
from loguru import logger

from reconciler.executors.kubernetes.client import message_of, status_of
from reconciler.executors.kubernetes.clone import CLONE_CONTAINER
from reconciler.executors.kubernetes.labels import MAIN_CONTAINER
from reconciler.executors.kubernetes.phases import newest_pod, secret_refs
from reconciler.executors.kubernetes.runs import Tracked
from reconciler.executors.kubernetes.secretmask import SecretMasker

TAIL_LINES = 200
"""Enough for a log tail and a stack's result line, which the runner prints last."""


def _started(pod: Mapping[str, Any], container: str) -> bool:
    status = pod.get("status") or {}
    for item in (*(status.get("initContainerStatuses") or ()),
                 *(status.get("containerStatuses") or ())):
        if item.get("name") == container:
            state = item.get("state") or {}
            last = item.get("lastState") or {}
            return bool(state.get("running") or state.get("terminated") or last.get("terminated"))
    return False


class PodLogs:
    def __init__(self, core: CoreV1Api, *, redact: Callable[[str], str]) -> None:
        self._core: Any = core  # with `_preload_content=False` the methods return responses
        self._redact = redact

    def tail(self, namespace: str, pods: Sequence[Mapping[str, Any]]) -> str:
        pod = newest_pod(pods)
        if pod is None:
            return ""
        name = str((pod.get("metadata") or {}).get("name"))
        if _started(pod, MAIN_CONTAINER):
            return self._read(namespace, name, MAIN_CONTAINER, TAIL_LINES)
        if _started(pod, CLONE_CONTAINER):
            return self._read(namespace, name, CLONE_CONTAINER, TAIL_LINES)
        return ""

    def full(self, namespace: str, pods: Sequence[Mapping[str, Any]]) -> str:
        pod = newest_pod(pods)
        if pod is None:
            return ""
        name = str((pod.get("metadata") or {}).get("name"))
        parts = [
            self._read(namespace, name, container, None)
            for container in (CLONE_CONTAINER, MAIN_CONTAINER)
            if _started(pod, container)
        ]
        return "".join(p if p.endswith("\n") or not p else p + "\n" for p in parts)

    def _read(self, namespace: str, pod: str, container: str, lines: int | None) -> str:
        try:
            response = self._core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=lines,
                _preload_content=False, _request_timeout=30,
            )
        except Exception as err:
            if status_of(err) not in (400, 404):
                logger.warning("cannot read the log of {}/{}: {}", pod, container,
                               self._redact(message_of(err)))
            return ""
        return self._redact(bytes(response.data).decode("utf-8", errors="replace"))


class LogTails:
    """The log tail of a run's report: a running run's read again at most every `interval`
    seconds, a finished run's once, after registering the run's secret values again (a Secret
    may have been rotated meanwhile). Withheld when a value cannot be read to mask it."""

    def __init__(self, logs: PodLogs, masker: SecretMasker, *, interval: float,
                 redact: Callable[[str], str]) -> None:
        self._logs = logs
        self._masker = masker
        self._interval = timedelta(seconds=interval)
        self._redact = redact

    def read(self, run: Tracked, job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
             *, finished: bool, now: datetime) -> str:
        if not finished and run.tail_read_at is not None and (
                now - run.tail_read_at < self._interval):
            return run.tail
        if not run.masked or finished:
            run.withheld = self._masker.mask(run.namespace, secret_refs(job))
            run.masked = run.withheld is None
        run.tail_read_at = now
        if run.withheld is not None:
            run.tail = f"(log withheld: {self._redact(run.withheld)})"
        else:
            # A Job past its deadline has its pods deleted, and their logs go with them:
            # then the lines read while the run was running are the best there is.
            run.tail = self._logs.tail(run.namespace, pods) or run.tail
        return run.tail
