"""Creating a stack's access objects (`stackaccess`) ahead of its Job, each step idempotent.

An object that exists already (409) is what an earlier run made: the state Secret and its Lease
are kept as they are (they hold the state and its lock), the ServiceAccount too; the Role and
the RoleBinding are replaced by what this run asks for, so a changed `serviceAccountName` moves
the binding, and a Role edited by hand cannot grant the stack pod more than its own state.
Errors are the client's `ApiException`s, sorted by `jobs.create_run` like the Job's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException


@dataclass(frozen=True)
class AccessApis:
    core: Any
    rbac: Any
    coordination: Any


def ensure_access(apis: AccessApis, namespace: str, objects: Sequence[dict[str, Any]]) -> None:
    for obj in objects:
        _ensure(apis, namespace, obj)


def _ensure(apis: AccessApis, namespace: str, obj: dict[str, Any]) -> None:
    kind, name = obj["kind"], obj["metadata"]["name"]
    creators = {
        "ServiceAccount": apis.core.create_namespaced_service_account,
        "Secret": apis.core.create_namespaced_secret,
        "Lease": apis.coordination.create_namespaced_lease,
        "Role": apis.rbac.create_namespaced_role,
        "RoleBinding": apis.rbac.create_namespaced_role_binding,
    }
    try:
        creators[kind](namespace, obj, _preload_content=False)
    except ApiException as err:
        if err.status != 409:
            raise
        if kind == "Role":
            apis.rbac.replace_namespaced_role(name, namespace, obj, _preload_content=False)
        elif kind == "RoleBinding":
            apis.rbac.replace_namespaced_role_binding(name, namespace, obj,
                                                      _preload_content=False)
