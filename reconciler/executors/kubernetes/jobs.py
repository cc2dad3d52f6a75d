"""What the executor does to a run's objects, each step idempotent.

Creating: a stack's access objects (`access`), the ConfigMap, the Job, then the Job as the
ConfigMap's owner. A submission
interrupted anywhere (a crash, a timeout whose request did reach the server) is finished by
doing it again: 409 AlreadyExists on the ConfigMap means an earlier try made it (same run, same
content), and on the Job it is how a restarted daemon adopts the run it had started.

Afterwards: failing a Job whose pod cannot start, marking a Job as recorded by the daemon, and
deleting a Job with its pods and ConfigMap. These return False when the API server could not
be reached, for the executor to try again on its next poll.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kubernetes.client import V1ConfigMap, V1Job
from kubernetes.client.exceptions import ApiException
from loguru import logger

from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.access import AccessApis, ensure_access
from reconciler.executors.kubernetes.client import (
    MERGE_PATCH,
    is_transient,
    message_of,
    read_json,
    status_of,
)
from reconciler.executors.kubernetes.manifests import RunManifests


class Outcome(StrEnum):
    CREATED = "created"
    ADOPTED = "adopted"
    WAIT = "wait"
    """The API server did not answer or answered 5xx/429: try again later."""
    REFUSED = "refused"
    """The API server refused the objects (403, 404 namespace, 422): the run failed."""


@dataclass(frozen=True)
class Submission:
    outcome: Outcome
    job: dict[str, Any] | None = None
    message: str = ""
    status: int | None = None
    """The API server's HTTP status when it refused."""


def create_run(batch: Any, manifests: RunManifests, *, access: AccessApis,
               instance: str) -> Submission:
    namespace = manifests.namespace
    name = manifests.job["metadata"]["name"]
    core = access.core
    try:
        ensure_access(access, namespace, manifests.access)
        if manifests.config_map is not None:
            _create_config_map(core, namespace, manifests.config_map)
        job = read_json(batch.create_namespaced_job(
            namespace, V1Job.from_dict(manifests.job), _preload_content=False))
        return Submission(Outcome.CREATED, job)
    except Exception as err:
        if status_of(err) == 409:
            return _adopt(batch, namespace, name, instance=instance)
        if is_transient(err):
            return Submission(Outcome.WAIT, message=message_of(err))
        if isinstance(err, ApiException):
            return Submission(Outcome.REFUSED, message=message_of(err), status=status_of(err))
        raise


def _create_config_map(core: Any, namespace: str, config_map: dict[str, Any]) -> None:
    try:
        core.create_namespaced_config_map(
            namespace, V1ConfigMap.from_dict(config_map), _preload_content=False)
    except ApiException as err:
        if err.status != 409:
            raise


def _adopt(batch: Any, namespace: str, name: str, *, instance: str) -> Submission:
    try:
        job = read_json(batch.read_namespaced_job(name, namespace, _preload_content=False))
    except Exception as err:
        if is_transient(err) or status_of(err) == 404:  # deleted in between: try again
            return Submission(Outcome.WAIT, message=message_of(err))
        if isinstance(err, ApiException):
            return Submission(Outcome.REFUSED, message=message_of(err))
        raise
    labels = (job.get("metadata") or {}).get("labels") or {}
    if lbl.RunMeta.from_object(job) is None or labels.get(lbl.INSTANCE) != instance:
        return Submission(Outcome.REFUSED, message=(
            f"a Job named {name} already exists in namespace {namespace} and was not "
            "created by this reconciler"))
    return Submission(Outcome.ADOPTED, job)


def own_config_map(core: Any, job: dict[str, Any]) -> bool:
    """Make the Job the owner of the run's ConfigMap; False when it is worth trying again."""
    meta = job.get("metadata") or {}
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta.get("name"),
             "uid": meta.get("uid")}
    try:
        core.patch_namespaced_config_map(
            meta.get("name"), meta.get("namespace"),
            {"metadata": {"ownerReferences": [owner]}},
            _content_type=MERGE_PATCH, _preload_content=False)
    except Exception as err:
        if is_transient(err):
            return False
        if status_of(err) != 404:  # gone with its Job already, or never to be owned
            logger.warning("the ConfigMap of {} will outlive its Job: {}", meta.get("name"),
                           message_of(err))
    return True


def fail_job(batch: Any, name: str, namespace: str, message: str,
             at: datetime) -> dict[str, Any] | None:
    """Record why the run failed on its Job and suspend it, which deletes the pod that cannot
    start; the Job stays, saying why. The updated Job, or None to try again later."""
    patch = {
        "metadata": {"annotations": {lbl.ANNOTATION_FAILURE: message,
                                     lbl.ANNOTATION_FAILED_AT: at.isoformat()}},
        "spec": {"suspend": True},
    }
    try:
        return read_json(batch.patch_namespaced_job(
            name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False))
    except Exception as err:
        logger.warning("cannot mark {} failed yet: {}", name, message_of(err))
        return None


def mark_recorded(batch: Any, job: dict[str, Any]) -> bool:
    """The daemon has recorded the run: annotate its Job, so a restart does not report it
    again. A Job suspended by `fail_job` would never finish, and is deleted instead."""
    meta = job.get("metadata") or {}
    name, namespace = str(meta.get("name")), str(meta.get("namespace"))
    if lbl.ANNOTATION_FAILURE in (meta.get("annotations") or {}):
        return delete_job(batch, name, namespace)
    return _settle(lambda: batch.patch_namespaced_job(
        name, namespace, {"metadata": {"annotations": {lbl.ANNOTATION_ACKNOWLEDGED: "true"}}},
        _content_type=MERGE_PATCH, _preload_content=False), f"mark {name} as recorded")


def delete_job(batch: Any, name: str, namespace: str) -> bool:
    """Delete a Job; its pods and ConfigMap follow (background propagation)."""
    return _settle(lambda: batch.delete_namespaced_job(
        name, namespace, propagation_policy="Background", _preload_content=False),
        f"delete the Job of {name}")


def _settle(request: Callable[[], object], action: str) -> bool:
    """Send a request that leaves a Job done with: True when it worked or the Job is gone
    already (404), False (with a warning) when it is worth trying again."""
    try:
        request()
    except Exception as err:
        if status_of(err) == 404:
            return True
        logger.warning("cannot {} yet: {}", action, message_of(err))
        return False
    return True


def job_gone(batch: Any, name: str, namespace: str) -> bool:
    """Whether the API server says the Job does not exist (an unanswered question is no)."""
    try:
        batch.read_namespaced_job(name, namespace, _preload_content=False)
    except Exception as err:
        return status_of(err) == 404
    return False
