"""A run as Kubernetes objects: one batch/v1 Job, plus a ConfigMap holding a task's files.

Pure (no client, no clock): the executor creates exactly what this returns, and
`reconciler render` prints it.

The pod of every run:

- runs as the unprivileged `nobody` user (UID/GID 65534 unless configured), with the restricted
  Pod Security profile: non-root, no privilege escalation, every capability dropped,
  `RuntimeDefault` seccomp; no `serviceAccountName` and no token unless the entry names an
  account (the policy decides at load time whether it may); a stack's pod runs as its declared
  account or else as its own, whose Role reaches the stack's own state and nothing else
  (`stackaccess`);
- `timeout` is the Job's `activeDeadlineSeconds` (→ TimedOut), the retries left are its
  `backoffLimit`, and `ttlSecondsAfterFinished` lets Kubernetes clean finished Jobs up;
- a Task's `files` are a ConfigMap mounted read-only at `/task` (the working directory), owned
  by the Job once it exists, so it is garbage-collected with it; `repository` is cloned into
  the writable `/workspace` by an init container (see `clone`); `secretEnv` are
  `secretKeyRef`s, so the daemon never reads a Secret;
- a Stack's module reaches the pod at the run's exact commit: the init container clones the
  daemon's repository (`source_url`, credentials from `source_credentials_secret`) and checks
  out `request.revision` into `/workspace`. The container runs the runner image of the stack's
  engine (`Defaults.spec.runnerImages`, which must hold Python with reconciler and the engine)
  in `/workspace/<path>`, through `programs/pod_entry` (`stackstate`), which keeps the state of
  a module with no backend of its own in the stack's Secret (locked by its Lease) around the
  stack runner.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, assert_never

from pydantic import BaseModel, ConfigDict, Field

from reconciler import __version__
from reconciler.declarations.entries import Entry
from reconciler.declarations.models import ResourceList, Resources, Spec, StackSpec, TaskSpec
from reconciler.executors.identity import run_identity
from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes import stackaccess
from reconciler.executors.kubernetes.clone import (
    DEFAULT_GIT_IMAGE,
    WORKSPACE,
    clone_container,
    literal,
)
from reconciler.executors.kubernetes.guards import check_entry
from reconciler.executors.kubernetes.labels import MAIN_CONTAINER
from reconciler.executors.kubernetes.taskfiles import (
    MAX_CONFIGMAP_BYTES,
    ManifestError,
    config_map_of,
    file_keys,
)
from reconciler.kinds.stack.launch import EngineName, runner_args, state_file
from reconciler.runs import RunRequest

__all__ = ["MAX_CONFIGMAP_BYTES", "KubernetesOptions", "ManifestError", "RunManifests",
           "build_manifests", "run_namespace"]

TASK_DIR = "/task"
STATE_DIR = "/var/lib/reconciler"
NOBODY = 65534
STACK_ENTRY_MODULE = "reconciler.programs.pod_entry"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


DEFAULT_RUNNER_IMAGE = f"reconciler:{__version__}"
"""The image the Dockerfile builds: Python, reconciler and OpenTofu, what a stack pod runs."""


class KubernetesOptions(BaseModel):
    """What the manifests need beyond the run itself; read once from the daemon's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(
        default="default", description="Namespace of runs whose Defaults name none."
    )
    instance: str = Field(
        default="reconciler",
        description="Label value separating the runs of two daemons sharing a namespace.",
    )
    source_url: str | None = Field(
        default=None, description="The daemon's repository URL, cloned by stack pods."
    )
    source_credentials_secret: str | None = Field(
        default=None, description="Secret with the credentials stack pods clone with."
    )
    git_image: str = Field(default=DEFAULT_GIT_IMAGE, description="Image of clone containers.")
    runner_image: str = Field(
        default=DEFAULT_RUNNER_IMAGE,
        description="Image of stack pods whose Defaults name none: reconciler and the engine.",
    )
    daemon_service_account: str | None = Field(
        default=None, description="The daemon's own service account, which no run may name."
    )
    engine_fallback: EngineName | None = Field(
        default=None,
        description="The engine stack pods run when the declared one is not in their image.",
    )
    ttl_seconds_after_finished: int = Field(default=86400, ge=0)
    run_as_user: int = Field(default=NOBODY, ge=1)
    run_as_group: int = Field(default=NOBODY, ge=1)


class RunManifests(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    job: dict[str, Any]
    config_map: dict[str, Any] | None = None
    access: tuple[dict[str, Any], ...] = ()
    """A stack's account, state Secret, lock Lease, Role and RoleBinding (`stackaccess`)."""

    def documents(self) -> list[dict[str, Any]]:
        """In the order they are created."""
        return [*self.access, *(d for d in (self.config_map, self.job) if d is not None)]


def run_namespace(entry: Entry, options: KubernetesOptions) -> str:
    return entry.defaults.namespace or options.namespace


def build_manifests(
    request: RunRequest, options: KubernetesOptions, *, namespace: str | None = None
) -> RunManifests:
    """The objects of one run. `namespace` overrides the Defaults and the options."""
    if not _DNS_LABEL.match(request.run_id) or len(request.run_id) > 63:
        raise ValueError(f"run id {request.run_id!r} is not a valid Kubernetes name")
    entry = request.entry
    ns = namespace or run_namespace(entry, options)
    labels = lbl.run_labels(entry, request.run_id, request.operation, instance=options.instance)
    check_entry(entry, instance=options.instance, own_secret=options.source_credentials_secret,
                own_account=options.daemon_service_account)
    config_map = config_map_of(request, ns, labels) if entry.files else None
    access: tuple[dict[str, Any], ...] = ()
    match entry.spec:
        case TaskSpec() as task:
            pod = _task_pod(request, task, options, config_map)
        case StackSpec() as stack:
            pod = _stack_pod(request, stack, options)
            access = tuple(stackaccess.access_objects(entry, ns, instance=options.instance))
        case _:
            assert_never(entry.spec)
    meta = lbl.RunMeta(
        run_id=request.run_id, entry_id=entry.id, spec_hash=entry.spec_hash,
        operation=request.operation, trigger=request.trigger, attempt=request.attempt,
        revision=request.revision, requested_at=request.requested_at,
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": request.run_id,
            "namespace": ns,
            "labels": dict(labels),
            "annotations": meta.annotations(),
        },
        "spec": {
            # The daemon counts attempts too: a Job only gets the retries this attempt has left.
            "backoffLimit": max(0, entry.spec.retries - (request.attempt - 1)),
            "activeDeadlineSeconds": entry.timeout_seconds,
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
            # Never two pods of one run at once (a stack apply least of all).
            "podReplacementPolicy": "Failed",
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }
    return RunManifests(namespace=ns, job=job, config_map=config_map, access=access)


# -- pods ------------------------------------------------------------------------------------


def _security(options: KubernetesOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    seccomp = {"type": "RuntimeDefault"}
    pod = {
        "runAsNonRoot": True,
        "runAsUser": options.run_as_user,
        "runAsGroup": options.run_as_group,
        "fsGroup": options.run_as_group,
        "seccompProfile": seccomp,
    }
    container = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": seccomp,
    }
    return pod, container


def _pod(
    entry: Entry,
    spec: Spec,
    options: KubernetesOptions,
    *,
    main: dict[str, Any],
    init: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    account: str | None,
) -> dict[str, Any]:
    defaults = entry.defaults
    pod_security, _ = _security(options)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # Without it the namespace's `default` account's token would be mounted.
        "automountServiceAccountToken": account is not None,
        "enableServiceLinks": False,
        "securityContext": pod_security,
    }
    if account:
        pod["serviceAccountName"] = account
    if defaults.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in defaults.image_pull_secrets]
    node_selector = {**defaults.node_selector, **spec.node_selector}
    if node_selector:
        pod["nodeSelector"] = node_selector
    tolerations: list[dict[str, Any]] = []
    for toleration in (*defaults.tolerations, *spec.tolerations):
        dumped = toleration.model_dump(exclude_none=True, by_alias=True)
        if dumped not in tolerations:
            tolerations.append(dumped)
    if tolerations:
        pod["tolerations"] = tolerations
    if init:
        pod["initContainers"] = init
    pod["containers"] = [main]
    pod["volumes"] = volumes
    return pod


def _task_pod(
    request: RunRequest,
    spec: TaskSpec,
    options: KubernetesOptions,
    config_map: dict[str, Any] | None,
) -> dict[str, Any]:
    entry = request.entry
    image = spec.image or entry.defaults.image
    if not image:
        raise ManifestError(
            f"{entry.id}: no image: set spec.image or the Defaults image "
            "(the kubernetes executor runs every task in a container)"
        )
    _, security = _security(options)
    resources = _resources(spec.resources or entry.defaults.resources)
    volumes: list[dict[str, Any]] = [{"name": "workspace", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKSPACE}]
    if config_map is not None:
        items = [{"key": key, "path": path} for path, key in file_keys(entry.files).items()]
        volumes.append({
            "name": "task-files",
            "configMap": {"name": config_map["metadata"]["name"], "items": items,
                          "defaultMode": 0o555},
        })
        mounts.append({"name": "task-files", "mountPath": TASK_DIR, "readOnly": True})
    main: dict[str, Any] = {
        "name": MAIN_CONTAINER,
        "image": image,
        "command": [literal(c) for c in spec.command],
        "workingDir": TASK_DIR if config_map is not None else WORKSPACE,
        "env": _env(request, spec.env, spec.secret_env),
        "securityContext": security,
        "volumeMounts": mounts,
    }
    if spec.args:
        main["args"] = [literal(a) for a in spec.args]
    if resources:
        main["resources"] = resources
    init = []
    if spec.repository is not None:
        init.append(clone_container(
            url=spec.repository.url, ref=spec.repository.ref,
            credentials_secret=spec.repository.credentials_secret, image=options.git_image,
            group=options.run_as_group, resources=resources, security=security,
        ))
    account = spec.service_account_name or entry.defaults.service_account_name
    return _pod(entry, spec, options, main=main, init=init, volumes=volumes, account=account)


def _stack_pod(request: RunRequest, spec: StackSpec, options: KubernetesOptions) -> dict[str, Any]:
    entry = request.entry
    if not options.source_url:
        raise ManifestError(
            f"{entry.id}: a stack pod clones the repository it is declared in, and the "
            "repository URL is not known"
        )
    _, security = _security(options)
    resources = _resources(spec.resources or entry.defaults.resources)
    image = getattr(entry.defaults.runner_images, spec.engine) or options.runner_image
    args = runner_args(entry, request.operation, state_dir=Path(STATE_DIR), engine_bin=None,
                       engine_fallback=options.engine_fallback)
    suffix = stackaccess.state_suffix(entry, instance=options.instance)
    workdir = WORKSPACE if spec.path == "." else f"{WORKSPACE}/{spec.path}"
    extra = {"PYTHONUNBUFFERED": "1", "HOME": STATE_DIR, "CHECKPOINT_DISABLE": "1"}
    env = _env(request, {**extra, **spec.env}, spec.secret_env)
    env.append({"name": "RECONCILER_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    main: dict[str, Any] = {
        "name": MAIN_CONTAINER,
        "image": image,
        "command": ["python3", "-m", STACK_ENTRY_MODULE],
        "args": [literal(a) for a in (
            "--state-secret", stackaccess.state_secret_name(suffix),
            "--state-lease", stackaccess.lock_lease_name(suffix),
            "--state-file", str(state_file(Path(STATE_DIR), entry.name)), "--", *args)],
        "workingDir": workdir,
        "env": env,
        "securityContext": security,
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "state", "mountPath": STATE_DIR},
        ],
    }
    if resources:
        main["resources"] = resources
    init = [clone_container(
        url=options.source_url, ref=request.revision,
        credentials_secret=options.source_credentials_secret, image=options.git_image,
        group=options.run_as_group, resources=resources, security=security,
    )]
    volumes = [{"name": "workspace", "emptyDir": {}}, {"name": "state", "emptyDir": {}}]
    account = stackaccess.stack_account(entry, instance=options.instance)
    return _pod(entry, spec, options, main=main, init=init, volumes=volumes, account=account)


def _env(
    request: RunRequest, env: dict[str, str], secret_env: dict[str, Any]
) -> list[dict[str, Any]]:
    """Defaults' env under the spec's, then secrets, then the run's identity (which wins), as
    the local executor does."""
    entry = request.entry
    values: dict[str, dict[str, Any]] = {}
    for name, value in {**entry.defaults.env, **env}.items():
        values[name] = {"name": name, "value": literal(value)}
    for name, ref in secret_env.items():
        values[name] = {"name": name,
                        "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
    for name, value in run_identity(request).items():
        values[name] = {"name": name, "value": value}
    return list(values.values())


def _resources(resources: Resources | None) -> dict[str, Any]:
    if resources is None:
        return {}
    out: dict[str, Any] = {}
    for part in ("requests", "limits"):
        quantities = _quantities(getattr(resources, part))
        if quantities:
            out[part] = quantities
    return out


def _quantities(values: ResourceList) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in values.model_dump(by_alias=False, exclude_none=True).items():
        out["ephemeral-storage" if name == "ephemeral_storage" else name] = str(value)
    return out
