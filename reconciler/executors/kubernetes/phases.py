"""A run's state from its Job and pods, the way the Job controller and the kubelet report it.

Pure: raw API objects in, an `Observation` out.

- Job condition `Complete` → Succeeded; `Failed` with reason `DeadlineExceeded` → TimedOut;
  `Failed` for any other reason (`BackoffLimitExceeded`, a pod failure policy) → Failed.
- Our own `reconciler.io/failure` annotation (a pod that could not start) → Failed.
- Otherwise Running once a pod of the run is running (or has run), Pending before.
- A container waiting for a reason that will not go away by itself (a missing Secret or key,
  a bad image) is reported in `blocked`; the executor fails the run when it persists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.clone import CLONE_CONTAINER
from reconciler.executors.kubernetes.labels import MAIN_CONTAINER
from reconciler.types import RunState

BLOCKING_REASONS = frozenset({
    "CreateContainerConfigError",  # a missing Secret, ConfigMap or key
    "CreateContainerError",
    "InvalidImageName",
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
})
IMMEDIATE_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
"""Reasons no retry can cure: the run fails as soon as they are seen."""


_MISSING_SECRET = re.compile(r'secrets? "([^"]+)" not found')
_MISSING_KEY = re.compile(r"couldn't find key (\S+) in Secret [^/\s]+/(\S+)")


class Blocked(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pod: str
    container: str
    reason: str
    message: str

    def describe(self, job: Mapping[str, Any]) -> str:
        """What the user has to fix, naming the `secretEnv` variables behind a missing Secret
        or key (the kubelet's message names only the Secret)."""
        detail = f"{self.reason}: {self.message}" if self.message else self.reason
        missing = _missing_reference(self.message)
        if missing is not None:
            secret, key = missing
            names = secret_env_names(job, self.container, secret, key)
            what = f"secret {secret!r} has no key {key!r}" if key else (
                f"secret {secret!r} not found")
            if names:
                return f"secretEnv {', '.join(names)}: {what} ({detail})"
            if self.container == CLONE_CONTAINER:
                return f"repository credentials: {what} ({detail})"
        what = "cannot clone the repository" if self.container == CLONE_CONTAINER else (
            "cannot start")
        return f"{what}: {detail}"


def _missing_reference(message: str) -> tuple[str, str | None] | None:
    key = _MISSING_KEY.search(message)
    if key is not None:
        return key.group(2), key.group(1)
    secret = _MISSING_SECRET.search(message)
    return (secret.group(1), None) if secret is not None else None


def _containers(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [*(pod.get("initContainers") or ()), *(pod.get("containers") or ())]


def secret_env_names(
    job: Mapping[str, Any], container: str, secret: str, key: str | None
) -> list[str]:
    """The variables of `container` that read `secret` (and `key`, when given)."""
    names = []
    for spec in _containers(job):
        if spec.get("name") != container:
            continue
        for item in spec.get("env") or ():
            ref = (item.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") == secret and (key is None or ref.get("key") == key):
                names.append(str(item.get("name")))
    return sorted(names)


def secret_refs(job: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every (Secret, key) the Job's containers read through `secretKeyRef`."""
    refs = set()
    for spec in _containers(job):
        for item in spec.get("env") or ():
            ref = (item.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") and ref.get("key"):
                refs.add((str(ref["name"]), str(ref["key"])))
    return refs


class Observation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state: RunState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    message: str = ""
    failed_pods: int = 0
    pod: str | None = None
    """The newest pod of the run, whose log is the run's log."""
    blocked: Blocked | None = None


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def newest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The pod whose log is the run's: an unfinished one if any, else the last created.
    `creationTimestamp` has whole seconds; two pods of one second are told apart by their
    `resourceVersion`, which grows with every write on the API servers we know."""
    def key(pod: Mapping[str, Any]) -> tuple[bool, str, int]:
        meta = pod.get("metadata") or {}
        phase = (pod.get("status") or {}).get("phase")
        version = str(meta.get("resourceVersion") or "")
        return (phase in (None, "Pending", "Running"), str(meta.get("creationTimestamp") or ""),
                int(version) if version.isdigit() else 0)

    return max(pods, key=key) if pods else None


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]


def _terminated(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    for item in _statuses(pod):
        if item.get("name") == container:
            state = item.get("state") or {}
            last = item.get("lastState") or {}
            found = state.get("terminated") or last.get("terminated")
            return found if isinstance(found, Mapping) else None
    return None


def _blocked(pod: Mapping[str, Any]) -> Blocked | None:
    for item in _statuses(pod):
        waiting = (item.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in BLOCKING_REASONS:
            return Blocked(
                pod=str((pod.get("metadata") or {}).get("name", "")),
                container=str(item.get("name", "")),
                reason=str(reason),
                message=str(waiting.get("message") or ""),
            )
    return None


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def _failure_text(pod: Mapping[str, Any] | None, failed_pods: int) -> tuple[str, int | None]:
    """`exit code 3 (OOMKilled) after 2 attempts`, from the pod that failed last."""
    exit_code: int | None = None
    parts: list[str] = []
    if pod is not None:
        clone = _terminated(pod, CLONE_CONTAINER)
        main = _terminated(pod, MAIN_CONTAINER)
        if clone is not None and clone.get("exitCode") not in (None, 0) and main is None:
            parts.append(f"the repository clone failed with exit code {clone.get('exitCode')}")
        elif main is not None and main.get("exitCode") is not None:
            exit_code = int(main["exitCode"])
            reason = main.get("reason")
            suffix = f" ({reason})" if reason and reason not in ("Error", "Completed") else ""
            parts.append(f"exit code {exit_code}{suffix}")
    if failed_pods > 1:
        parts.append(f"after {failed_pods} attempts")
    return " ".join(parts), exit_code


def observe(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Observation:
    status = job.get("status") or {}
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    started = parse_time(status.get("startTime"))
    failed_pods = int(status.get("failed") or 0)
    pod = newest_pod(pods)
    pod_name = str((pod.get("metadata") or {}).get("name")) if pod is not None else None
    common: dict[str, Any] = {"started_at": started, "failed_pods": failed_pods, "pod": pod_name}

    if lbl.ANNOTATION_FAILURE in annotations:
        return Observation(
            state=RunState.FAILED, message=str(annotations[lbl.ANNOTATION_FAILURE]),
            finished_at=parse_time(annotations.get(lbl.ANNOTATION_FAILED_AT)), **common,
        )
    complete = _condition(job, "Complete")
    if complete is not None:
        main = _terminated(pod, MAIN_CONTAINER) if pod is not None else None
        code = main.get("exitCode") if main is not None else 0
        finished = parse_time(status.get("completionTime")) or parse_time(
            complete.get("lastTransitionTime"))
        return Observation(state=RunState.SUCCEEDED, finished_at=finished,
                           exit_code=int(code) if code is not None else 0, **common)
    failed = _condition(job, "Failed")
    if failed is not None:
        finished = parse_time(failed.get("lastTransitionTime"))
        text, code = _failure_text(pod, failed_pods)
        if failed.get("reason") == "DeadlineExceeded":
            deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
            message = f"timed out after {deadline}s" if deadline else "timed out"
            return Observation(state=RunState.TIMED_OUT, finished_at=finished, message=message,
                               exit_code=code, **common)
        if failed.get("reason") != "BackoffLimitExceeded":
            detail = failed.get("message") or failed.get("reason") or "the Job failed"
            text = f"{detail}; {text}" if text else str(detail)
        return Observation(state=RunState.FAILED, finished_at=finished,
                           message=f"failed: {text}" if text else "failed",
                           exit_code=code, **common)

    blocked = _blocked(pod) if pod is not None else None
    phase = (pod.get("status") or {}).get("phase") if pod is not None else None
    running = phase in ("Running", "Succeeded", "Failed") or failed_pods > 0
    message = blocked.describe(job) if blocked is not None else _pending_message(pod)
    return Observation(state=RunState.RUNNING if running else RunState.PENDING,
                       message=message, blocked=blocked, **common)


def _pending_message(pod: Mapping[str, Any] | None) -> str:
    if pod is None:
        return ""
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"not scheduled: {condition.get('message') or condition.get('reason', '')}"
    return ""
