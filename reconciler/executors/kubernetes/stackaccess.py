"""A stack's own access to its state: the objects the daemon creates beside a stack's Job.

The engine's `kubernetes` backend lists every Secret of the namespace (to find workspaces), so a
token that can use it can read every Secret there: the daemon's Git credentials and every other
stack's state. Instead, each stack gets its state Secret and lock Lease made for it by the
daemon, a Role that allows `get` and `update` on those two names only (`resourceNames`; create
and list cannot be limited by name, so the pod is given neither), and a RoleBinding of that Role
to the account its pod runs as: the stack's declared `serviceAccountName`, or else a
ServiceAccount of its own, made here too. The stack pod's entry point (`stackstate`) loads the
state from the Secret, locks the Lease while the engine runs, and writes the state back.

The Secret has the name, labels and encoding the engine's `kubernetes` backend uses (gzip,
`data.tfstate`), so state written by an earlier version, or by `tofu` with that backend, is the
same state. Pure: names and manifests, no client.
"""

from __future__ import annotations

from typing import Any

from reconciler.declarations.entries import Entry
from reconciler.declarations.models import StackSpec
from reconciler.executors.kubernetes import labels as lbl

STATE_LABEL = "reconciler.io/stack-state"
WORKSPACE = "default"
RBAC_GROUP = "rbac.authorization.k8s.io"
VERBS = ("get", "update")
"""All a stack pod may do to its own state: read it, write it, take and release its lock."""


def state_suffix(entry: Entry, *, instance: str) -> str:
    return f"{instance}-{entry.name}"


def state_secret_name(suffix: str) -> str:
    return f"tfstate-{WORKSPACE}-{suffix}"


def lock_lease_name(suffix: str) -> str:
    return f"lock-{state_secret_name(suffix)}"


def account_prefix(instance: str) -> str:
    """What the names of stacks' own accounts start with: no entry may name one of them."""
    return f"{instance}-stack-"


def own_account_name(entry: Entry, *, instance: str) -> str:
    """The ServiceAccount, Role and RoleBinding of a stack: one name for the three."""
    return account_prefix(instance) + entry.name


def stack_account(entry: Entry, *, instance: str) -> str:
    """The account a stack's pod runs as: the declared one, else the stack's own."""
    spec = entry.spec
    assert isinstance(spec, StackSpec)
    declared = spec.service_account_name or entry.defaults.service_account_name
    return declared or own_account_name(entry, instance=instance)


def _labels(entry: Entry, suffix: str, *, instance: str) -> dict[str, str]:
    return {lbl.MANAGED_BY: lbl.MANAGER, lbl.INSTANCE: instance, lbl.ENTRY: entry.name,
            lbl.KIND: entry.kind.prefix, STATE_LABEL: suffix}


def _meta(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def access_objects(entry: Entry, namespace: str, *, instance: str) -> list[dict[str, Any]]:
    """What a stack's run needs before its Job, in the order they are created."""
    suffix = state_suffix(entry, instance=instance)
    labels = _labels(entry, suffix, instance=instance)
    secret, lease = state_secret_name(suffix), lock_lease_name(suffix)
    own = own_account_name(entry, instance=instance)
    account = stack_account(entry, instance=instance)
    objects: list[dict[str, Any]] = []
    if account == own:
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": _meta(own, namespace, labels)})
    # The engine's own labels too, so `tofu` with the kubernetes backend finds this state.
    engine_labels = {**labels, "tfstate": "true", "tfstateSecretSuffix": suffix,
                     "tfstateWorkspace": WORKSPACE}
    objects += [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {**_meta(secret, namespace, engine_labels),
                      "annotations": {"encoding": "gzip"}}},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": _meta(lease, namespace, engine_labels), "spec": {}},
        {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "Role",
         "metadata": _meta(own, namespace, labels),
         "rules": [
             {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret],
              "verbs": list(VERBS)},
             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
              "resourceNames": [lease], "verbs": list(VERBS)},
         ]},
        {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "RoleBinding",
         "metadata": _meta(own, namespace, labels),
         "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": own},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]},
    ]
    return objects
