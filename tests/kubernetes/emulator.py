"""kmock's `KubernetesEmulator`, extended to behave as the Kubernetes API documents it.

kmock 0.8 serves objects over real HTTP but, as shipped, ignores label selectors, answers PUT
with 404, sets no `resourceVersion`, `uid` or `creationTimestamp`, returns the object on DELETE
and has no `pods/log`. This subclass keeps kmock's HTTP plumbing, discovery and object store
(`server.objects[...]` still holds every version of every object) and serves resource requests
itself, following the API conventions:

- every write bumps one `resourceVersion` counter; PUT and precondition-carrying PATCH/DELETE
  answer 409 Conflict on a stale version; create answers 409 AlreadyExists;
- objects are validated against the real OpenAPI schemas (`kubernetes-validate`, strict) and
  the metadata rules (names, labels), and a ConfigMap holds at most 1 MiB: 422 Invalid;
- a namespace must exist; `status` is a subresource of Jobs and Pods (writes to the object
  leave it alone, writes to `/status` change nothing else); Lease MicroTimes must carry six
  fractional digits;
- PATCH takes JSON Patch, merge patch and strategic merge patch (the latter as a merge patch);
- DELETE answers a `Status`, honours finalizers and `propagationPolicy` (Jobs orphan their
  pods unless told otherwise, as batch/v1 does) and garbage-collects dependents by
  `ownerReferences`;
- list and watch honour label and field selectors; a watch resumes from a `resourceVersion`
  (410 Expired when that history is gone), ends after `timeoutSeconds`, sends bookmarks, and
  turns an object leaving or entering a selector into DELETED/ADDED;
- `pods/{name}/log` serves what the test (standing in for the kubelet) wrote, with `container`
  and `tailLines`.

Tests steer it with `drop_watches()` (a proxy cutting connections), `compact()` (etcd
compaction), `fail()` (transient API errors), `forbid_namespace()` (RBAC granting a user
nothing in a namespace: every request there answers 403, worded as the real authorizer words
it) and `write_log()`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kubernetes_validate
from kmock import KubernetesEmulator, Request, resource

from tests.kubernetes.apimachinery import (
    MICRO_TIME,
    ApiError,
    field_selector,
    json_patch,
    label_selector,
    merge_patch,
    now_rfc3339,
    success_status,
)

KINDS = {
    ("", "v1", "namespaces"): "Namespace",
    ("", "v1", "pods"): "Pod",
    ("", "v1", "configmaps"): "ConfigMap",
    ("", "v1", "secrets"): "Secret",
    ("", "v1", "events"): "Event",
    ("batch", "v1", "jobs"): "Job",
    ("coordination.k8s.io", "v1", "leases"): "Lease",
    ("", "v1", "serviceaccounts"): "ServiceAccount",
    ("rbac.authorization.k8s.io", "v1", "roles"): "Role",
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): "RoleBinding",
}
WITH_STATUS = frozenset({"pods", "jobs", "namespaces"})
CLUSTER_SCOPED = frozenset({"namespaces"})
SCHEMA_VERSION = "1.33"
MAX_CONFIGMAP_BYTES = 1024 * 1024
NAMESPACES = resource("", "v1", "namespaces")

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DROP = object()


@dataclass(eq=False)
class Watcher:
    resource: resource
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


@dataclass
class Fault:
    method: str
    plural: str
    code: int
    times: int
    user_agent: str | None = None


def _gvp(res: resource) -> tuple[str, str, str]:
    return (res.group or "", res.version or "", res.plural or "")


def _api_version(res: resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def _qualified(res: resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else str(res.plural)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.setdefault("metadata", {})
    return meta


def _not_found(res: resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(res)} "{name}" not found',
                    name=name, group=res.group, kind=res.plural)


@attrs.define(kw_only=True)
class ApiServer(KubernetesEmulator):
    validate_schemas: bool = True
    bookmark_interval: float | None = None
    max_watch_seconds: float = 1800.0
    _rv: int = attrs.field(default=1, init=False)
    _history: list[tuple[int, resource, str, dict[str, Any], dict[str, Any] | None]] = (
        attrs.field(factory=list, init=False))
    _oldest: int = attrs.field(default=0, init=False)
    _watchers: set[Watcher] = attrs.field(factory=set, init=False)
    _logs: dict[tuple[str, str, str], str] = attrs.field(factory=dict, init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    requests: list[tuple[str, str, str]] = attrs.field(factory=list, init=False)
    _forbidden: dict[str, tuple[str | None, frozenset[str] | None]] = attrs.field(
        factory=dict, init=False)
    """(User-Agent, method, path?query) of every resource request, in order."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.add_namespace("default")

    # -- what tests call (inside the server's event loop) -----------------------------------

    def add_namespace(self, name: str) -> None:
        """Namespaces are made here: kmock reads `/api/v1/namespaces/NAME` as a namespace of
        objects, not as the object NAME."""
        if self._current(NAMESPACES, None, name) is None:
            self._write(NAMESPACES, None, name, {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": str(uuid.uuid4()),
                             "creationTimestamp": now_rfc3339()}})

    def get_object(self, res: resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._current(res, namespace, name)

    def write_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        key = (namespace, pod, container)
        self._logs[key] = self._logs.get(key, "") + text

    def drop_watches(self) -> int:
        """Cut every open watch connection mid-stream, as a proxy or a restart would."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(DROP)
        return len(self._watchers)

    def compact(self) -> None:
        """Forget the event history: a watch resuming from before now gets 410 Expired."""
        self._history.clear()
        self._oldest = self._rv

    def fail(self, method: str, plural: str, code: int = 503, times: int = 1,
             user_agent: str | None = None) -> None:
        """Answer the next `times` matching requests with `code`; with `user_agent`, only
        those of clients whose User-Agent contains it (RBAC denies one user, not all)."""
        self._faults.append(Fault(method.upper(), plural, code, times, user_agent))

    def forbid_namespace(self, namespace: str, user_agent: str | None = None,
                         verbs: frozenset[str] | None = None) -> None:
        """Answer 403 to every request in `namespace` (of clients whose User-Agent contains
        `user_agent`, when given; with `verbs`, only those), as an API server whose RBAC grants
        that user nothing (or not those verbs) there."""
        self._forbidden[namespace] = (user_agent, verbs)

    def permit_namespace(self, namespace: str) -> None:
        self._forbidden.pop(namespace, None)

    def _check_rbac(self, request: Request) -> None:
        ns = request.namespace
        if ns is None or ns not in self._forbidden:
            return
        agent, verbs = self._forbidden[ns]
        if agent is not None and agent not in request.headers.get("User-Agent", ""):
            return
        res = request.resource
        method = request.method.value
        if method == "GET":
            watching = request.params.get("watch") in ("true", "1")
            verb = "get" if request.name else ("watch" if watching else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}.get(method, method.lower())
        if verbs is not None and verb not in verbs:
            return
        plural = res.plural or ""
        if request.subresource:
            plural = f"{plural}/{request.subresource}"
        qualified = f"{plural}.{res.group}" if res.group else plural
        raise ApiError(403, "Forbidden", f'{qualified} is forbidden: User '
                       f'"system:serviceaccount:reconciler:reconciler" cannot {verb} resource '
                       f'"{plural}" in API group "{res.group or ""}" in the namespace "{ns}"',
                       group=res.group, kind=res.plural)

    def watcher_count(self) -> int:
        return len(self._watchers)

    # -- dispatch --------------------------------------------------------------------------

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None or not res.plural or not res.version:
            return await super()._handle(request)
        raw = request._raw_request
        self.requests.append((request.headers.get("User-Agent", ""), request.method.value,
                              str(raw.rel_url) if raw is not None else str(request.url)))
        try:
            self._check_rbac(request)
            self._inject_fault(request)
            return await self._dispatch(request)
        except ApiError as err:
            return aiohttp.web.json_response(err.status(), status=err.code)

    def _inject_fault(self, request: Request) -> None:
        agent = request.headers.get("User-Agent", "")
        for fault in self._faults:
            if fault.user_agent is not None and fault.user_agent not in agent:
                continue
            if fault.method == request.method.value and fault.plural == request.resource.plural:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                reason = {403: "Forbidden", 404: "NotFound"}.get(fault.code, "ServiceUnavailable")
                raise ApiError(fault.code, reason, f"{reason.lower()}: injected by the test")

    async def _dispatch(self, request: Request) -> aiohttp.web.StreamResponse:
        method = request.method.value
        res = request.resource
        assert res is not None
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return await self._watch(request)
        if method == "GET" and request.name is None:
            return aiohttp.web.json_response(self._list(request))
        if method == "GET" and request.subresource == "log":
            return self._log(request)
        if method == "GET" and request.subresource in (None, "status"):
            found = self._current(res, request.namespace, request.name or "")
            if found is None:
                raise _not_found(res, request.name or "")
            return aiohttp.web.json_response(found)
        if method == "POST" and request.name is None:
            return aiohttp.web.json_response(self._create(request), status=201)
        if method in ("PUT", "PATCH") and request.name:
            return aiohttp.web.json_response(self._update(request))
        if method == "DELETE" and request.name:
            return aiohttp.web.json_response(self._delete(request))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {request.url}")

    # -- storage ---------------------------------------------------------------------------

    def _current(self, res: resource, ns: str | None, name: str) -> dict[str, Any] | None:
        key = (res, ns, name)
        if key not in self.objects:
            return None
        stored = self.objects[key]
        return None if stored.deleted else copy.deepcopy(stored.raw)

    def _existing(
        self, request: Request
    ) -> tuple[resource, str | None, str, dict[str, Any]]:
        """The object a request names, which must exist (a 404 as the API sends it, else)."""
        res, ns, name = request.resource, request.namespace, request.name or ""
        assert res is not None
        current = self._current(res, ns, name)
        if current is None:
            raise _not_found(res, name)
        return res, ns, name, current

    def _all(self, res: resource, ns: str | None) -> list[dict[str, Any]]:
        found = [
            copy.deepcopy(obj.raw) for (r, n, _), obj in self.objects.items()
            if r == res and (ns is None or n == ns) and not obj.deleted
        ]
        return sorted(found, key=lambda o: (_meta(o).get("namespace") or "", _meta(o)["name"]))

    def _write(self, res: resource, ns: str | None, name: str, obj: dict[str, Any] | None,
               *, old: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Store a new version (None deletes) and tell the watchers."""
        self._rv += 1
        key = (res, ns, name)
        if obj is None:
            assert old is not None
            gone = copy.deepcopy(old)
            _meta(gone)["resourceVersion"] = str(self._rv)
            self.objects[key].delete()
            self._publish(res, "DELETED", gone, old)
            return None
        _meta(obj)["resourceVersion"] = str(self._rv)
        if key in self.objects:
            self.objects[key].history.append(copy.deepcopy(obj))
        else:
            self.objects[key] = copy.deepcopy(obj)
        self._publish(res, "MODIFIED" if old is not None else "ADDED", obj, old)
        return obj

    def _publish(self, res: resource, kind: str, obj: dict[str, Any],
                 old: dict[str, Any] | None) -> None:
        event = (self._rv, res, kind, copy.deepcopy(obj), old)
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.resource == res:
                watcher.queue.put_nowait(event)

    # -- validation ------------------------------------------------------------------------

    def _check_namespace(self, res: resource, ns: str | None) -> None:
        if res.plural in CLUSTER_SCOPED:
            return
        if not ns or self._current(NAMESPACES, None, ns) is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                           name=ns, kind="namespaces")

    def _validate(self, res: resource, obj: dict[str, Any]) -> None:
        meta = _meta(obj)
        name = meta.get("name", "")
        problems = []
        limit = 63 if res.plural in ("jobs", "namespaces") else 253
        if len(name) > limit or not _SUBDOMAIN.match(name):
            problems.append(f"metadata.name: Invalid value: {name!r}: must be a lowercase "
                            f"RFC 1123 subdomain of at most {limit} characters")
        for key, value in (meta.get("labels") or {}).items():
            prefix, _, label = key.rpartition("/")
            if (prefix and not _SUBDOMAIN.match(prefix)) or len(label) > 63 or not (
                    _LABEL_NAME.match(label)):
                problems.append(f"metadata.labels: Invalid value: {key!r}")
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                problems.append(f"metadata.labels: Invalid value: {value!r}")
        if res.plural == "configmaps":
            size = sum(len(k) + len(v.encode()) for k, v in (obj.get("data") or {}).items())
            if size > MAX_CONFIGMAP_BYTES:
                problems.append(f"[]: Too long: must have at most {MAX_CONFIGMAP_BYTES} bytes")
        if res.plural == "leases":
            for stamp in ("acquireTime", "renewTime"):
                value = (obj.get("spec") or {}).get(stamp)
                if value is not None and not MICRO_TIME.match(str(value)):
                    raise ApiError(400, "BadRequest", f"Lease in version \"v1\" cannot be "
                                   f"handled as a Lease: parsing time {value!r}")
        if self.validate_schemas and _gvp(res) in KINDS:
            try:
                kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
            except kubernetes_validate.ValidationError as err:
                problems.append(f"schema: {err.message} at {list(err.path)}")
        if problems:
            raise ApiError(422, "Invalid",
                           f'{KINDS.get(_gvp(res), res.plural)} "{name}" is invalid: '
                           + "; ".join(problems), name=name, kind=res.plural)

    # -- create, update, delete ------------------------------------------------------------

    def _create(self, request: Request) -> dict[str, Any]:
        res = request.resource
        assert res is not None
        body = request.data
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = _meta(obj)
        ns = request.namespace
        if meta.get("namespace") and ns and meta["namespace"] != ns:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                           "match the namespace sent on the request")
        self._check_namespace(res, ns)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))  # noqa: S311
            meta["name"] = meta["generateName"] + suffix
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value: name or "
                           "generateName is required")
        if self._current(res, ns, name) is not None:
            raise ApiError(409, "AlreadyExists", f'{_qualified(res)} "{name}" already exists',
                           name=name, group=res.group, kind=res.plural)
        obj["apiVersion"] = _api_version(res)
        obj["kind"] = KINDS.get(_gvp(res), obj.get("kind", ""))
        if ns is not None:
            meta["namespace"] = ns
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        for server_side in ("deletionTimestamp", "resourceVersion"):
            meta.pop(server_side, None)
        if "spec" in obj:
            meta["generation"] = 1
        if res.plural in WITH_STATUS:
            obj["status"] = {"phase": "Pending"} if res.plural == "pods" else {}
        self._validate(res, obj)
        stored = self._write(res, ns, name, obj)
        assert stored is not None
        if self._orphaned(ns, obj):
            # The garbage collector deletes a dependent whose owners are all gone: a controller
            # that created a pod for a Job deleted meanwhile does not leave it behind.
            self._write(res, ns, name, None, old=stored)
        return stored

    def _orphaned(self, ns: str | None, obj: dict[str, Any]) -> bool:
        owners = {o.get("uid") for o in _meta(obj).get("ownerReferences") or []}
        if not owners:
            return False
        alive = {_meta(s.raw).get("uid") for (_, n, _), s in self.objects.items()
                 if n == ns and not s.deleted}
        return not owners & alive

    def _update(self, request: Request) -> dict[str, Any]:
        res, ns, name, current = self._existing(request)
        body = request.data
        wanted = _meta(body).get("resourceVersion") if isinstance(body, dict) else None
        if request.method.value == "PUT":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body must be a JSON object")
            if _meta(body).get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the "
                               "name on the URL")
            new = copy.deepcopy(body)
        else:
            new = self._patched(request, current)
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(res)} '
                           f'"{name}": the object has been modified; please apply your changes '
                           "to the latest version and try again",
                           name=name, group=res.group, kind=res.plural)
        new = self._keep_server_fields(request, res, current, new)
        if new == current:
            return current  # a no-op write changes no version and sends no event
        self._validate(res, new)
        if (_meta(new).get("deletionTimestamp") and not _meta(new).get("finalizers")):
            self._write(res, ns, name, None, old=current)
            return new
        stored = self._write(res, ns, name, new, old=current)
        assert stored is not None
        return stored

    def _patched(self, request: Request, current: dict[str, Any]) -> dict[str, Any]:
        kind = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = request.data
        if kind == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "a JSON Patch is a list of operations")
            return json_patch(current, body)
        if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a merge patch is a JSON object")
            result: dict[str, Any] = merge_patch(current, body)
            return result
        raise ApiError(415, "UnsupportedMediaType", f"the patch type {kind!r} is not supported")

    def _keep_server_fields(self, request: Request, res: resource, current: dict[str, Any],
                            new: dict[str, Any]) -> dict[str, Any]:
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        meta, before = _meta(new), current["metadata"]
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
            if fixed in before:
                meta[fixed] = before[fixed]
            else:
                meta.pop(fixed, None)
        meta["resourceVersion"] = before["resourceVersion"]
        if res.plural in WITH_STATUS:
            if request.subresource == "status":
                new = {**current, "status": new.get("status") or {}}
            else:
                new["status"] = current.get("status") or {}
        if current.get("immutable") and (new.get("data") != current.get("data") or
                                          not new.get("immutable")):
            raise ApiError(422, "Invalid", f'{current["kind"]} "{before["name"]}" is invalid: '
                           "data: Forbidden: field is immutable when `immutable` is set")
        if res.plural == "jobs":
            self._check_job_update(current, new)
        if "generation" in before:
            changed = new.get("spec") != current.get("spec")
            meta["generation"] = before["generation"] + (1 if changed else 0)
        return new

    @staticmethod
    def _check_job_update(current: dict[str, Any], new: dict[str, Any]) -> None:
        old_spec, new_spec = current.get("spec") or {}, new.get("spec") or {}
        for fixed in ("template", "selector", "completionMode", "podFailurePolicy"):
            if old_spec.get(fixed) != new_spec.get(fixed) and not (
                    fixed == "template" and old_spec.get("suspend")):
                raise ApiError(422, "Invalid", f'Job "{current["metadata"]["name"]}" is '
                               f"invalid: spec.{fixed}: Invalid value: field is immutable")

    def _delete(self, request: Request) -> dict[str, Any]:
        res, ns, name, current = self._existing(request)
        options = request.data if isinstance(request.data, dict) else {}
        precondition = options.get("preconditions") or {}
        for field_name in ("uid", "resourceVersion"):
            if precondition.get(field_name) and (
                    precondition[field_name] != current["metadata"].get(field_name)):
                raise ApiError(409, "Conflict", f"Precondition failed: {field_name}")
        policy = (request.params.get("propagationPolicy") or options.get("propagationPolicy")
                  or ("Orphan" if res.plural == "jobs" else "Background"))
        meta = current["metadata"]
        details = {"name": name, "group": res.group, "kind": res.plural, "uid": meta["uid"]}
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                marked = copy.deepcopy(current)
                _meta(marked)["deletionTimestamp"] = now_rfc3339()
                self._write(res, ns, name, marked, old=current)
                return marked
            return current
        self._write(res, ns, name, None, old=current)
        self._collect_dependents(ns, meta["uid"], policy)
        return success_status(**details)

    def _collect_dependents(self, ns: str | None, uid: str, policy: str) -> None:
        """What the garbage collector does once an owner is gone."""
        for (res, n, name), stored in list(self.objects.items()):
            if n != ns or stored.deleted:
                continue
            obj = copy.deepcopy(stored.raw)
            owners = _meta(obj).get("ownerReferences") or []
            if not any(o.get("uid") == uid for o in owners):
                continue
            if policy == "Orphan":
                kept = [o for o in owners if o.get("uid") != uid]
                orphan = copy.deepcopy(obj)
                _meta(orphan)["ownerReferences"] = kept or None
                if not kept:
                    _meta(orphan).pop("ownerReferences")
                self._write(res, n, name, orphan, old=obj)
            else:
                self._write(res, n, name, None, old=obj)
                self._collect_dependents(n, _meta(obj)["uid"], "Background")

    # -- reading ---------------------------------------------------------------------------

    def _selected(self, request: Request) -> Any:
        labels = label_selector(request.params.get("labelSelector"))
        fields = field_selector(request.params.get("fieldSelector"))
        return lambda obj: labels(_meta(obj).get("labels") or {}) and fields(obj)

    def _list(self, request: Request) -> dict[str, Any]:
        res = request.resource
        assert res is not None
        matches = self._selected(request)
        items = [o for o in self._all(res, request.namespace) if matches(o)]
        return {"apiVersion": _api_version(res), "kind": KINDS.get(_gvp(res), "") + "List",
                "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _log(self, request: Request) -> aiohttp.web.StreamResponse:
        res, ns, name = request.resource, request.namespace or "", request.name or ""
        assert res is not None
        pod = self._current(res, ns, name)
        if pod is None:
            raise _not_found(res, name)
        spec = pod.get("spec") or {}
        names = [c["name"] for c in (*(spec.get("initContainers") or ()), *spec["containers"])]
        container = request.params.get("container")
        if container is None:
            if len(names) != 1:
                raise ApiError(400, "BadRequest", f"a container name must be specified for pod "
                               f"{name}, choose one of: [{' '.join(names)}]")
            container = names[0]
        if container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        text = self._logs.get((ns, name, container))
        if text is None:
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is '
                           "waiting to start: ContainerCreating")
        lines = request.params.get("tailLines")
        if lines is not None:
            kept = text.splitlines(keepends=True)[-int(lines):] if int(lines) > 0 else []
            text = "".join(kept)
        return aiohttp.web.Response(text=text, content_type="text/plain")

    async def _watch(self, request: Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        assert res is not None
        assert request._raw_request is not None
        matches = self._selected(request)
        ns = request.namespace
        since = request.params.get("resourceVersion") or "0"
        timeout = min(float(request.params.get("timeoutSeconds") or self.max_watch_seconds),
                      self.max_watch_seconds)
        bookmarks = request.params.get("allowWatchBookmarks") in ("true", "1")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        watcher = Watcher(res)
        if since != "0" and int(since) < self._oldest:
            expired = ApiError(410, "Expired", f"too old resource version: {since} "
                               f"({self._oldest})")
            await response.write(json.dumps({"type": "ERROR", "object": expired.status()})
                                 .encode() + b"\n")
            await response.write_eof()
            return response
        if since == "0":
            backlog = [("ADDED", o) for o in self._all(res, ns) if matches(o)]
        else:
            backlog = [self._view(kind, obj, old, ns, matches)
                       for rv, r, kind, obj, old in self._history if rv > int(since) and r == res]
        self._watchers.add(watcher)
        try:
            for kind, obj in (b for b in backlog if b is not None):
                await self._send(response, kind, obj)
            await self._stream(response, request, watcher, matches, timeout, bookmarks)
        except (ConnectionError, asyncio.CancelledError):
            return response
        finally:
            self._watchers.discard(watcher)
        return response

    async def _stream(self, response: aiohttp.web.StreamResponse, request: Request,
                      watcher: Watcher, matches: Any, timeout: float, bookmarks: bool) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            wait = min(left, self.bookmark_interval or left) if bookmarks else left
            try:
                event = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if bookmarks and self.bookmark_interval and deadline - loop.time() > 0:
                    await self._send(response, "BOOKMARK", {
                        "apiVersion": _api_version(watcher.resource),
                        "kind": KINDS.get(_gvp(watcher.resource), ""),
                        "metadata": {"resourceVersion": str(self._rv)}})
                continue
            if event is DROP:
                raw = request._raw_request
                transport = raw.transport if raw is not None else None
                if transport is not None:
                    transport.abort()
                return
            _, _, kind, obj, old = event
            view = self._view(kind, obj, old, request.namespace, matches)
            if view is not None:
                await self._send(response, *view)
        await response.write_eof()

    @staticmethod
    def _view(kind: str, obj: dict[str, Any], old: dict[str, Any] | None, ns: str | None,
              matches: Any) -> tuple[str, dict[str, Any]] | None:
        """An event as a watcher with these selectors sees it."""
        if ns is not None and _meta(obj).get("namespace") != ns:
            return None
        now, before = matches(obj), old is not None and matches(old)
        if kind == "MODIFIED" and now != before:
            return ("ADDED" if now else "DELETED"), obj
        if kind == "DELETED":
            return (kind, obj) if before else None
        return (kind, obj) if now else None

    @staticmethod
    async def _send(response: aiohttp.web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
        await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
