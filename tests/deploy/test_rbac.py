"""The daemon's Role grants exactly what the code uses: every Kubernetes request the executor
and leader election make (recorded while the tests of tests/kubernetes drive them against the
API emulator), and every typed client call found in the code. Nothing more."""

from __future__ import annotations

from typing import Any

from reconciler.declarations.entries import Entry
from reconciler.executors.kubernetes import stackaccess
from tests.deploy.rbac import (
    Permission,
    client_calls,
    client_method_permission,
    permission,
    role_permissions,
)
from tests.deploy.support import REPO, config_map_data, find, rendered
from tests.kubernetes.test_executor import stack_entry as make_stack_entry

KUBERNETES_CODE = REPO / "reconciler" / "executors" / "kubernetes"
RECORD_TIMEOUT = 480


def daemon_role() -> set[Permission]:
    return role_permissions(find(rendered("base"), "Role", "reconciler"))


def static_permissions() -> dict[Permission, set[str]]:
    """Permissions of the typed client calls in the code. A list function handed to an informer
    is also used to watch."""
    needed: dict[Permission, set[str]] = {}
    informer = (KUBERNETES_CODE / "informer.py").read_text()
    for name, files in client_calls(sorted(KUBERNETES_CODE.glob("*.py"))).items():
        wanted = client_method_permission(name)
        grants = [wanted]
        if wanted.verb == "list" and "watch=True" in informer:
            grants.append(wanted._replace(verb="watch"))
        for grant in grants:
            needed.setdefault(grant, set()).update(files)
    return needed


def test_request_permissions_follow_the_api_servers_rules() -> None:
    base = "https://10.0.0.1:443"
    assert permission("GET", f"{base}/apis/batch/v1/namespaces/r/jobs?labelSelector=a") == (
        Permission("batch", "jobs", "list"))
    assert permission("GET", f"{base}/apis/batch/v1/namespaces/r/jobs?watch=true") == (
        Permission("batch", "jobs", "watch"))
    assert permission("GET", f"{base}/api/v1/namespaces/r/pods/p/log?container=run") == (
        Permission("", "pods/log", "get"))
    assert permission("PUT", f"{base}/apis/coordination.k8s.io/v1/namespaces/r/leases/l") == (
        Permission("coordination.k8s.io", "leases", "update"))
    assert permission("DELETE", f"{base}/api/v1/namespaces/r/configmaps") == (
        Permission("", "configmaps", "deletecollection"))
    assert client_method_permission("read_namespaced_pod_log") == (
        Permission("", "pods/log", "get"))
    assert client_method_permission("patch_namespaced_job") == Permission("batch", "jobs", "patch")


def test_the_code_uses_the_kubernetes_client() -> None:
    """Guards the scan below: it must find the executor's calls, or it proves nothing."""
    calls = client_calls(sorted(KUBERNETES_CODE.glob("*.py")))
    assert "create_namespaced_job" in calls
    assert "list_namespaced_pod" in calls


def test_the_role_grants_every_typed_client_call_in_the_code() -> None:
    missing = {str(p): sorted(f) for p, f in static_permissions().items() if p not in daemon_role()}
    assert not missing, f"the code makes calls deploy/base/role.yaml does not allow: {missing}"


def test_the_daemon_reads_only_secrets_it_names() -> None:
    """`get` by name (the Secret keys a run references, to mask them in logs), `create` and
    `update` for stack state Secrets; never list or watch, which would hand it every Secret of
    the namespace."""
    for permissions in (daemon_role(), set(static_permissions())):
        assert {p.verb for p in permissions if p.resource == "secrets"} <= {
            "get", "create", "update"}


def stack_role() -> dict[str, Any]:
    """The Role the executor creates for a stack, as `render` shows it."""
    entry = stack_entry()
    objects = stackaccess.access_objects(entry, "runs", instance="reconciler")
    role: dict[str, Any] = next(o for o in objects if o["kind"] == "Role")
    return role


def escalation_permissions() -> set[Permission]:
    """What the daemon must hold itself to create the stack Role (RBAC escalation rules)."""
    return role_permissions(stack_role())


def test_a_stack_role_reaches_its_own_state_and_nothing_else() -> None:
    role = stack_role()
    assert [r["resourceNames"] for r in role["rules"]] == [
        ["tfstate-default-reconciler-warehouse"], ["lock-tfstate-default-reconciler-warehouse"]]
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "update"}  # no list, no watch, no create
        assert len(rule["resourceNames"]) == 1
    # Never the daemon's credentials, never its leader Lease.
    names = {n for r in role["rules"] for n in r["resourceNames"]}
    config = config_map_data(rendered("base"))
    assert not names & {"reconciler", config["RECONCILER_SOURCE_CREDENTIALS_SECRET"]}


def test_the_daemon_holds_what_the_stack_role_grants() -> None:
    assert not escalation_permissions() - daemon_role()



def stack_entry() -> Entry:
    return make_stack_entry("warehouse")
