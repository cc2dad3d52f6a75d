"""A stack pod's entry point, run for real (the stack runner and the bundled engine) against the
API emulator with the objects the daemon makes for the stack: the state goes to the stack's
Secret and comes back in the next pod, the lock is its Lease, and every request it makes is one
the stack's Role allows, by name. A module with its own backend is left to it."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kmock import resource
from kubernetes.client import CoordinationV1Api, CoreV1Api, RbacAuthorizationV1Api

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import Entry
from reconciler.declarations.loader import DeclarationLoader
from reconciler.executors.kubernetes.access import AccessApis, ensure_access
from reconciler.executors.kubernetes.executor import KubernetesExecutor
from reconciler.executors.kubernetes.manifests import KubernetesOptions, build_manifests
from reconciler.executors.kubernetes.stackstate import _Synced
from reconciler.executors.kubernetes.statestore import StateStore
from reconciler.runs import RunRequest, run_id_for
from reconciler.types import EntryId, Operation, Revision, Trigger
from tests.deploy.rbac import permission
from tests.kubernetes.conftest import DAEMON_AGENT, NAMESPACE
from tests.kubernetes.server import RunningApiServer

ENGINE = shutil.which("reconciler-terraform", path=str(Path(sys.executable).parent))
DECLARATION = """\
apiVersion: reconciler.io/v1alpha1
kind: Stack
metadata: {name: net}
spec: {path: net, engine: terraform, vars: {size: SIZE}}
"""
MODULE = """\
variable "size" { type = string }
resource "terraform_data" "x" { input = var.size }
"""
OPTIONS = KubernetesOptions(namespace=NAMESPACE, source_url="https://git.example.com/r.git")
pytestmark = pytest.mark.skipif(ENGINE is None, reason="the bundled engine is not installed")
Run = Callable[..., subprocess.CompletedProcess[str]]


def stack_entry(root: Path, size: str) -> Entry:
    (root / "net").mkdir(parents=True, exist_ok=True)
    (root / "net" / "main.tf").write_text(MODULE)
    (root / "reconciler.yaml").write_text(DECLARATION.replace("SIZE", size))
    return DeclarationLoader().load(DirectorySource(root)).entries[EntryId("stack/net")]


def apply_request(entry: Entry) -> RunRequest:
    return RunRequest(
        run_id=run_id_for(entry, Operation.APPLY, 1), entry=entry, operation=Operation.APPLY,
        trigger=Trigger.NEW, attempt=1, revision=Revision("0" * 40),
        requested_at=datetime(2030, 1, 1, tzinfo=UTC))


def access_for(entry: Entry) -> list[dict[str, Any]]:
    return list(build_manifests(apply_request(entry), OPTIONS).access)


@pytest.fixture
def run(apiserver: RunningApiServer, tmp_path: Path) -> Run:
    """One stack pod: the daemon's objects, then the entry point in a fresh state dir."""
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    client = apiserver.client()
    client.user_agent = DAEMON_AGENT
    apis = AccessApis(core=CoreV1Api(client), rbac=RbacAuthorizationV1Api(client),
                      coordination=CoordinationV1Api(client))
    count = 0

    def pod(size: str, operation: str = "apply") -> subprocess.CompletedProcess[str]:
        nonlocal count
        count += 1
        root = tmp_path / f"pod-{count}"
        entry = stack_entry(root / "workspace", size)
        ensure_access(apis, NAMESPACE, access_for(entry))
        state_dir = root / "state"
        args = ["--state-secret", "tfstate-default-reconciler-net",
                "--state-lease", "lock-tfstate-default-reconciler-net",
                "--state-file", str(state_dir / "stacks" / "net" / "terraform.tfstate"),
                "--", operation, "--stack", "net", "--engine", "terraform",
                "--state-dir", str(state_dir), "--engine-bin", str(ENGINE),
                "--vars", json.dumps({"size": size})]
        env = {"PATH": os.environ["PATH"], "HOME": str(root), "KUBECONFIG": str(kubeconfig),
               "RECONCILER_NAMESPACE": NAMESPACE, "HOSTNAME": f"net-pod-{count}",
               "CHECKPOINT_DISABLE": "1"}
        return subprocess.run(
            [sys.executable, "-m", "reconciler.programs.pod_entry", *args],
            cwd=root / "workspace" / "net", env=env, capture_output=True, text=True,
            timeout=180, check=False)

    return pod


def stored_state(apiserver: RunningApiServer) -> dict[str, Any]:
    secret = apiserver.call(apiserver.server.get_object, resource("", "v1", "secrets"),
                            NAMESPACE, "tfstate-default-reconciler-net")
    assert secret is not None
    value: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(
        secret["data"]["tfstate"])))
    return value


def lease(apiserver: RunningApiServer) -> dict[str, Any]:
    found = apiserver.call(apiserver.server.get_object,
                           resource("coordination.k8s.io", "v1", "leases"), NAMESPACE,
                           "lock-tfstate-default-reconciler-net")
    assert found is not None
    return found


def test_the_state_lives_in_the_stacks_secret_between_pods(
        apiserver: RunningApiServer, run: Run) -> None:
    first = run("small")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "state: Secret tfstate-default-reconciler-net in namespace runs" in first.stdout
    state = stored_state(apiserver)
    [resource] = state["resources"]
    assert resource["instances"][0]["attributes"]["input"]["value"] == "small"
    assert "holderIdentity" not in lease(apiserver).get("spec", {})  # released

    second = run("large")  # a new pod: a fresh filesystem, the same state
    assert second.returncode == 0, second.stdout + second.stderr
    again = stored_state(apiserver)
    assert again["lineage"] == state["lineage"]
    assert again["serial"] > state["serial"]
    assert again["resources"][0]["instances"][0]["attributes"]["input"]["value"] == "large"


def test_a_stack_pod_asks_only_for_its_own_secret_and_lease(
        apiserver: RunningApiServer, run: Run, tmp_path: Path) -> None:
    entry = stack_entry(tmp_path / "declared", "small")
    role = next(o for o in access_for(entry) if o["kind"] == "Role")
    allowed = {(group, resource, verb, name) for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]
               for verb in rule["verbs"] for name in rule["resourceNames"]}
    before = len(apiserver.call(lambda: list(apiserver.server.requests)))
    done = run("small")
    assert done.returncode == 0, done.stdout + done.stderr

    requests = apiserver.call(lambda: list(apiserver.server.requests))[before:]
    pod_requests = [(m, u) for agent, m, u in requests if agent != DAEMON_AGENT]
    assert pod_requests
    for method, url in pod_requests:
        needed = permission(method, url)
        name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        assert (needed.group, needed.resource, needed.verb, name) in allowed, (method, url)


def test_a_lock_held_elsewhere_stops_the_run(apiserver: RunningApiServer, run: Run) -> None:
    assert run("small").returncode == 0
    before = stored_state(apiserver)

    def hold() -> None:
        res = resource("coordination.k8s.io", "v1", "leases")
        current = apiserver.server.get_object(res, NAMESPACE, "lock-tfstate-default-reconciler-net")
        assert current is not None
        current["spec"]["holderIdentity"] = "tofu-by-hand"
        apiserver.server._write(res, NAMESPACE, current["metadata"]["name"], current,
                                old=current)

    apiserver.call(hold)
    blocked = run("large")
    assert blocked.returncode != 0
    assert "locked by tofu-by-hand" in blocked.stdout
    assert stored_state(apiserver) == before
    assert lease(apiserver)["spec"]["holderIdentity"] == "tofu-by-hand"


def test_a_module_with_its_own_backend_is_left_alone(tmp_path: Path) -> None:
    module = tmp_path / "net"
    module.mkdir()
    (module / "main.tf").write_text('terraform {\n  backend "s3" {}\n}\n')
    env = {k: v for k, v in os.environ.items() if k not in ("RECONCILER_NAMESPACE", "KUBECONFIG")}
    env["KUBECONFIG"] = str(tmp_path / "missing")
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.programs.pod_entry",
         "--state-secret", "s", "--state-lease", "l", "--state-file", str(tmp_path / "f"),
         "--namespace", "ns", "--", "--help"],
        cwd=module, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert "usage: reconciler stack-run" in result.stdout  # no cluster was needed


def test_the_namespace_is_required(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_NAMESPACE"}
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.programs.pod_entry",
         "--state-secret", "s", "--state-lease", "l", "--state-file", str(tmp_path / "f"),
         "--", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False, env=env)
    assert result.returncode == 2
    assert "namespace is unknown" in result.stderr



def test_a_lock_its_holder_stopped_renewing_is_taken_over(
        apiserver: RunningApiServer, run: Run) -> None:
    assert run("small").returncode == 0

    def abandon() -> None:
        res = resource("coordination.k8s.io", "v1", "leases")
        current = apiserver.server.get_object(res, NAMESPACE, "lock-tfstate-default-reconciler-net")
        assert current is not None
        current["spec"].update(holderIdentity="net-pod-killed", leaseDurationSeconds=60,
                               renewTime="2020-01-01T00:00:00.000000Z")
        apiserver.server._write(res, NAMESPACE, current["metadata"]["name"], current,
                                old=current)

    apiserver.call(abandon)
    taken = run("large")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "holderIdentity" not in lease(apiserver)["spec"]
    assert stored_state(apiserver)["resources"][0]["instances"][0]["attributes"]["input"][
        "value"] == "large"


def test_a_state_file_caught_mid_write_is_not_stored(
        apiserver: RunningApiServer, run: Run, tmp_path: Path) -> None:
    assert run("small").returncode == 0
    before = stored_state(apiserver)
    store = StateStore(apiserver.client(), namespace=NAMESPACE,
                       secret="tfstate-default-reconciler-net",
                       lease="lock-tfstate-default-reconciler-net", holder="test")
    path = tmp_path / "terraform.tfstate"
    synced = _Synced(store, path, json.dumps(before).encode())
    path.write_bytes(b'{"version": 4, "serial": 9, "lin')  # the engine is halfway through
    synced.sync()
    assert stored_state(apiserver) == before
    path.write_text(json.dumps({**before, "serial": before["serial"] + 1}))
    synced.sync()
    assert stored_state(apiserver)["serial"] == before["serial"] + 1


def test_the_executor_makes_a_stacks_access_and_keeps_its_state(
        apiserver: RunningApiServer, tmp_path: Path) -> None:
    """Submitting a stack run makes its objects; a later run keeps the stored state and moves
    the binding to a newly declared account."""
    client = apiserver.client()
    client.user_agent = DAEMON_AGENT
    executor = KubernetesExecutor(api_client=client, options=OPTIONS, watch_timeout=30)
    try:
        entry = stack_entry(tmp_path / "one", "small")
        executor.submit(apply_request(entry))
        secrets = resource("", "v1", "secrets")
        secret = apiserver.call(apiserver.server.get_object, secrets, NAMESPACE,
                                "tfstate-default-reconciler-net")
        assert secret is not None
        secret["data"] = {"tfstate": base64.b64encode(gzip.compress(b'{"serial": 7}')).decode()}
        apiserver.call(apiserver.server._write, secrets, NAMESPACE,
                       "tfstate-default-reconciler-net", secret, old=secret)

        changed = stack_entry(tmp_path / "two", "large")
        changed = changed.model_copy(update={"spec": changed.stack.model_copy(
            update={"service_account_name": "net-deployer"})})
        executor.submit(apply_request(changed))
        kept = apiserver.call(apiserver.server.get_object, secrets, NAMESPACE,
                              "tfstate-default-reconciler-net")
        assert kept is not None
        assert gzip.decompress(base64.b64decode(kept["data"]["tfstate"])) == b'{"serial": 7}'
        binding = apiserver.call(apiserver.server.get_object,
                                 resource("rbac.authorization.k8s.io", "v1", "rolebindings"),
                                 NAMESPACE, "reconciler-stack-net")
        assert binding is not None
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "net-deployer",
                                        "namespace": NAMESPACE}]
    finally:
        executor.close()
