"""What a run becomes on Kubernetes: every manifest of every Task and Stack of sample-repo/ and
of a set of edge cases validates against the real OpenAPI schemas (strict, so a misspelt field
fails), passes the checks the API server makes beyond the schemas, meets the restricted Pod
Security Standard, and carries the declared settings where Kubernetes reads them."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from reconciler import __version__
from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import Entry
from reconciler.declarations.loader import DeclarationLoader
from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.guards import token_account
from reconciler.executors.kubernetes.manifests import (
    KubernetesOptions,
    ManifestError,
    RunManifests,
    build_manifests,
)
from reconciler.runs import RunRequest, run_id_for
from reconciler.types import EntryId, Kind, Operation, Revision, Trigger
from tests.deploy.podsecurity import restricted_violations
from tests.kubernetes.cluster import expand

REPO = Path(__file__).resolve().parents[2]
SCHEMA_VERSIONS = ("1.30", "1.33", "1.37")
REVISION = Revision("89abcdef0123456789abcdef0123456789abcdef")
OPTIONS = KubernetesOptions(namespace="runs", source_url="https://git.example.com/org/repo.git",
                            source_credentials_secret="repo-creds")
LONG = "a" * 38 + "-z"  # 40 characters, the longest name there is

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

EDGE_CASES = """\
apiVersion: reconciler.io/v1alpha1
kind: Defaults
metadata: {name: defaults}
spec:
  image: "busybox:1.36"
  imagePullSecrets: [registry-creds]
  nodeSelector: {pool: batch}
  tolerations: [{key: dedicated, operator: Equal, value: batch, effect: NoSchedule}]
  runnerImages: {opentofu: "registry.example.com/reconciler-runner:tofu"}
---
apiVersion: reconciler.io/v1alpha1
kind: Task
metadata: {name: bare}
spec: {command: ["true"]}
---
apiVersion: reconciler.io/v1alpha1
kind: Task
metadata: {name: many-files, labels: {team: data, tier: "2"}}
spec:
  command: [sh, run.sh]
  files:
    run.sh: "#!/bin/sh\\necho hi\\n"
    lib/util.py: "x = 1\\n"
    lib/deep/er/config.json: "{}"
    lib_util.py: "clashes with lib/util.py once flattened"
    .hidden: ""
  retries: 3
---
apiVersion: reconciler.io/v1alpha1
kind: Task
metadata: {name: clone-https}
spec:
  command: [make, test]
  repository:
    {url: "https://git.example.com/org/app.git", ref: v1.2.3, credentialsSecret: app-creds}
  secretEnv:
    API_TOKEN: {secret: api, key: token}
    DB_PASSWORD: {secret: db, key: password}
  env: {PRICE: "$(NOT_EXPANDED) costs $$5", EMPTY: ""}
---
apiVersion: reconciler.io/v1alpha1
kind: Task
metadata: {name: clone-ssh}
spec:
  command: [ls]
  repository: {url: "git@git.example.com:org/app.git", credentialsSecret: deploy-key}
---
apiVersion: reconciler.io/v1alpha1
kind: Task
metadata: {name: scheduled-big}
spec:
  command: [sh, -c, 'echo "$HOME $(date) $$"']
  resources:
    requests: {cpu: 250m, memory: 1Gi, ephemeralStorage: 2Gi}
    limits: {cpu: 2, memory: 2Gi, nvidia.com/gpu: 1}
  tolerations:
    - {key: gpu, operator: Exists, effect: NoExecute, tolerationSeconds: 60}
  nodeSelector: {accelerator: a100}
  serviceAccountName: batch-runner
  timeout: 2h
---
apiVersion: reconciler.io/v1alpha1
kind: Task
metadata: {name: LONGNAME}
spec: {command: ["true"], timeout: 1d}
---
apiVersion: reconciler.io/v1alpha1
kind: Stack
metadata: {name: plan-only}
spec: {path: infra/plan-only, apply: plan, vars: {region: eu-west-1, sizes: [1, 2]}}
---
apiVersion: reconciler.io/v1alpha1
kind: Stack
metadata: {name: at-root}
spec: {path: ., engine: terraform, secretEnv: {TF_VAR_token: {secret: cloud, key: token}}}
""".replace("LONGNAME", LONG)


def load(root: Path) -> dict[EntryId, Entry]:
    desired = DeclarationLoader().load(DirectorySource(root))
    assert desired.clean, [str(e) for e in desired.errors]
    return desired.entries


@pytest.fixture(scope="module")
def edge_entries(tmp_path_factory: pytest.TempPathFactory) -> dict[EntryId, Entry]:
    root = tmp_path_factory.mktemp("edge")
    (root / "reconciler.yaml").write_text(EDGE_CASES)
    for folder in ("infra/plan-only", "."):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "main.tf").write_text('resource "terraform_data" "x" {}\n')
    return load(root)


def request(entry: Entry, *, attempt: int = 1, operation: Operation | None = None) -> RunRequest:
    if operation is None:
        operation = Operation.RUN if entry.kind is Kind.TASK else Operation.APPLY
    return RunRequest(
        run_id=run_id_for(entry, operation, attempt), entry=entry, operation=operation,
        trigger=Trigger.NEW, attempt=attempt, revision=REVISION,
        requested_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def api_server_problems(manifests: RunManifests) -> list[str]:
    """What the API server checks beyond the OpenAPI schemas, for these objects."""
    problems: list[str] = []
    job = manifests.job
    for obj in manifests.documents():
        meta = obj["metadata"]
        limit = 63 if obj["kind"] in ("Job", "ConfigMap") else 253
        if not _DNS_LABEL.match(meta["name"]) or len(meta["name"]) > limit:
            problems.append(f"name {meta['name']!r}")
        for key, value in meta.get("labels", {}).items():
            if len(value) > 63 or not _LABEL_VALUE.match(value) or len(key.split("/")[-1]) > 63:
                problems.append(f"label {key}={value!r}")
    # Pods are named <job>-<5 characters>, and their name is a label value too.
    if len(job["metadata"]["name"]) + 6 > 63:
        problems.append("pod names would be too long")
    pod = job["spec"]["template"]["spec"]
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    volumes = {v["name"] for v in pod["volumes"]}
    if len(volumes) != len(pod["volumes"]):
        problems.append("duplicate volume names")
    if len({c["name"] for c in containers}) != len(containers):
        problems.append("duplicate container names")
    for container in containers:
        env = [e["name"] for e in container.get("env", [])]
        if len(set(env)) != len(env) or not all(_ENV_NAME.match(n) for n in env):
            problems.append(f"{container['name']}: env names {env}")
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        if len(set(mounts)) != len(mounts):
            problems.append(f"{container['name']}: duplicate mount paths")
        problems += [f"{container['name']}: mounts unknown volume {m['name']}"
                     for m in container.get("volumeMounts", []) if m["name"] not in volumes]
    if manifests.config_map is not None:
        data = manifests.config_map["data"]
        problems += [f"config key {k!r}" for k in data if not _CONFIG_KEY.match(k)]
        for volume in pod["volumes"]:
            for item in volume.get("configMap", {}).get("items", []):
                if item["key"] not in data or item["path"].startswith(("/", "..")):
                    problems.append(f"item {item}")
    return problems


def assert_valid(manifests: RunManifests) -> None:
    for document in manifests.documents():
        for version in SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{document['kind']} {document['metadata']['name']} is invalid in "
                            f"Kubernetes {version}: {err.message} at {list(err.path)}")
    assert api_server_problems(manifests) == []
    assert restricted_violations(manifests.job["spec"]["template"]["spec"]) == []


def test_sample_repo_entries_render_to_valid_objects() -> None:
    entries = load(REPO / "sample-repo")
    assert {e.kind for e in entries.values()} == {Kind.TASK, Kind.STACK}
    for entry in entries.values():
        operations = [Operation.RUN] if entry.kind is Kind.TASK else [
            Operation.APPLY, Operation.PLAN, Operation.DRIFT, Operation.DESTROY]
        for operation in operations:
            assert_valid(build_manifests(request(entry, operation=operation), OPTIONS))


def test_edge_cases_render_to_valid_objects(edge_entries: dict[EntryId, Entry]) -> None:
    assert len(edge_entries) == 8
    for entry in edge_entries.values():
        for attempt in (1, 4):
            assert_valid(build_manifests(request(entry, attempt=attempt), OPTIONS))


def pod_of(manifests: RunManifests) -> dict[str, Any]:
    spec: dict[str, Any] = manifests.job["spec"]["template"]["spec"]
    return spec


def main_container(manifests: RunManifests) -> dict[str, Any]:
    container: dict[str, Any] = pod_of(manifests)["containers"][0]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_labels_name_and_annotations_let_a_restart_adopt_the_job(
        edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("task/many-files")]
    run = request(entry, attempt=2)
    manifests = build_manifests(run, OPTIONS)
    meta = manifests.job["metadata"]

    assert meta["name"] == run.run_id == build_manifests(run, OPTIONS).job["metadata"]["name"]
    assert meta["namespace"] == "runs"
    assert meta["labels"] == {
        "team": "data", "tier": "2",
        "app.kubernetes.io/managed-by": "reconciler", "reconciler.io/instance": "reconciler",
        "reconciler.io/entry": "many-files", "reconciler.io/kind": "task",
        "reconciler.io/spec-hash": entry.spec_hash[:16], "reconciler.io/operation": "run",
        "reconciler.io/run-id": run.run_id,
    }
    assert manifests.job["spec"]["template"]["metadata"]["labels"] == meta["labels"]
    parsed = lbl.RunMeta.from_object(manifests.job)
    assert parsed is not None
    assert (parsed.run_id, parsed.entry_id, parsed.spec_hash, parsed.attempt,
            parsed.revision, parsed.requested_at) == (
        run.run_id, entry.id, entry.spec_hash, 2, REVISION, run.requested_at)


def test_timeout_retries_and_cleanup(edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("task/many-files")]  # retries: 3, timeout from defaults: 1h
    spec = build_manifests(request(entry), OPTIONS).job["spec"]
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["backoffLimit"] == 3
    assert spec["ttlSecondsAfterFinished"] == 86400
    assert spec["podReplacementPolicy"] == "Failed"
    # The daemon's own retries count too: attempt 3 has one retry left.
    assert build_manifests(request(entry, attempt=3), OPTIONS).job["spec"]["backoffLimit"] == 1
    assert build_manifests(request(entry, attempt=9), OPTIONS).job["spec"]["backoffLimit"] == 0
    big = edge_entries[EntryId("task/scheduled-big")]
    assert build_manifests(request(big), OPTIONS).job["spec"]["activeDeadlineSeconds"] == 7200


def test_the_pod_is_locked_down(edge_entries: dict[EntryId, Entry]) -> None:
    manifests = build_manifests(request(edge_entries[EntryId("task/bare")]), OPTIONS)
    pod = pod_of(manifests)
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert main_container(manifests)["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert "serviceAccountName" not in pod
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["nodeSelector"] == {"pool": "batch"}


def test_files_are_a_read_only_config_map_at_task(edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("task/many-files")]
    manifests = build_manifests(request(entry), OPTIONS)
    config_map = manifests.config_map
    assert config_map is not None
    assert config_map["immutable"] is True
    assert config_map["metadata"]["name"] == manifests.job["metadata"]["name"]
    volume = next(v for v in pod_of(manifests)["volumes"] if "configMap" in v)
    paths = {item["path"]: config_map["data"][item["key"]] for item in
             volume["configMap"]["items"]}
    assert paths == entry.files
    main = main_container(manifests)
    assert {"name": volume["name"], "mountPath": "/task", "readOnly": True} in (
        main["volumeMounts"])
    assert main["workingDir"] == "/task"
    assert manifests.documents() == [config_map, manifests.job]
    bare = build_manifests(request(edge_entries[EntryId("task/bare")]), OPTIONS)
    assert bare.config_map is None
    assert main_container(bare)["workingDir"] == "/workspace"


def test_secret_env_and_literal_values(edge_entries: dict[EntryId, Entry]) -> None:
    manifests = build_manifests(request(edge_entries[EntryId("task/clone-https")]), OPTIONS)
    env = env_of(main_container(manifests))
    assert env["API_TOKEN"] == {"secretKeyRef": {"name": "api", "key": "token"}}
    assert env["DB_PASSWORD"] == {"secretKeyRef": {"name": "db", "key": "password"}}
    # The kubelet expands $(VAR) and $$: what the container sees is what was declared.
    assert expand(env["PRICE"], {"NOT_EXPANDED": "oops"}) == "$(NOT_EXPANDED) costs $$5"
    assert env["EMPTY"] == ""
    assert env["RECONCILER_ENTRY"] == "task/clone-https"
    big = build_manifests(request(edge_entries[EntryId("task/scheduled-big")]), OPTIONS)
    command = [expand(a, {"HOME": "/x", "date": "no"}) for a in main_container(big)["command"]]
    assert command == ["sh", "-c", 'echo "$HOME $(date) $$"']


def test_repository_is_cloned_by_an_init_container(edge_entries: dict[EntryId, Entry]) -> None:
    https = build_manifests(request(edge_entries[EntryId("task/clone-https")]), OPTIONS)
    clone = pod_of(https)["initContainers"][0]
    env = env_of(clone)
    assert clone["name"] == "clone"
    assert (env["GIT_URL"], env["GIT_REF"]) == ("https://git.example.com/org/app.git", "v1.2.3")
    assert env["GIT_PASSWORD"] == {"secretKeyRef": {"name": "app-creds", "key": "password"}}
    assert env["GIT_USERNAME"] == {"secretKeyRef": {"name": "app-creds", "key": "username",
                                                    "optional": True}}
    assert clone["securityContext"]["runAsUser"] == 65534
    assert {"name": "workspace", "mountPath": "/workspace"} in clone["volumeMounts"]

    ssh = build_manifests(request(edge_entries[EntryId("task/clone-ssh")]), OPTIONS)
    env = env_of(pod_of(ssh)["initContainers"][0])
    assert env["GIT_SSH_KEY"] == {"secretKeyRef": {"name": "deploy-key", "key": "ssh-privatekey"}}
    assert env["GIT_KNOWN_HOSTS"] == {"secretKeyRef": {"name": "deploy-key",
                                                       "key": "known_hosts"}}
    assert env["GIT_REF"] == "main"


def test_scheduling_resources_and_service_account(edge_entries: dict[EntryId, Entry]) -> None:
    manifests = build_manifests(request(edge_entries[EntryId("task/scheduled-big")]), OPTIONS)
    pod = pod_of(manifests)
    assert main_container(manifests)["resources"] == {
        "requests": {"cpu": "250m", "memory": "1Gi", "ephemeral-storage": "2Gi"},
        "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["nodeSelector"] == {"pool": "batch", "accelerator": "a100"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"},
        {"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    assert pod["serviceAccountName"] == "batch-runner"
    assert pod["automountServiceAccountToken"] is True


def test_stacks_clone_the_exact_commit_and_run_the_runner(
        edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("stack/plan-only")]
    manifests = build_manifests(request(entry, operation=Operation.PLAN), OPTIONS)
    assert manifests.config_map is None
    pod = pod_of(manifests)
    clone = env_of(pod["initContainers"][0])
    assert (clone["GIT_URL"], clone["GIT_REF"]) == (OPTIONS.source_url, REVISION)
    assert clone["GIT_PASSWORD"]["secretKeyRef"]["name"] == "repo-creds"
    main = main_container(manifests)
    assert main["image"] == "registry.example.com/reconciler-runner:tofu"
    assert main["workingDir"] == "/workspace/infra/plan-only"
    assert main["command"] == ["python3", "-m", "reconciler.programs.pod_entry"]
    args = main["args"]
    assert args[:7] == [
        "--state-secret", "tfstate-default-reconciler-plan-only",
        "--state-lease", "lock-tfstate-default-reconciler-plan-only",
        "--state-file", "/var/lib/reconciler/stacks/plan-only/terraform.tfstate", "--"]
    assert args[7:9] == ["plan", "--stack"]
    assert "--plan-only" in args
    assert env_of(main)["RECONCILER_NAMESPACE"] == {"fieldRef": {"fieldPath":
                                                                 "metadata.namespace"}}
    # The stack's own account, never the namespace's `default` one.
    assert pod["serviceAccountName"] == "reconciler-stack-plan-only"
    assert pod["automountServiceAccountToken"] is True

    root = edge_entries[EntryId("stack/at-root")]
    at_root = build_manifests(request(root), OPTIONS)
    main = main_container(at_root)
    assert main["workingDir"] == "/workspace"
    # No runner image in Defaults for terraform: the daemon's --runner-image (reconciler's own
    # image, which holds the runner and the engine).
    assert root.defaults.runner_images.terraform is None
    assert main["image"] == OPTIONS.runner_image == f"reconciler:{__version__}"
    assert env_of(main)["TF_VAR_token"] == {"secretKeyRef": {"name": "cloud", "key": "token"}}


def test_the_daemons_engine_fallback_reaches_the_stack_runner(
        edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("stack/plan-only")]
    strict = main_container(build_manifests(request(entry), OPTIONS))["args"]
    options = OPTIONS.model_copy(update={"engine_fallback": "terraform"})
    allowed = main_container(build_manifests(request(entry), options))["args"]

    assert "--engine-fallback" not in strict, "no fallback unless the operator allows one"
    assert allowed[allowed.index("--engine-fallback") + 1] == "terraform"
    assert allowed.index("--engine-fallback") > allowed.index("--"), "the runner's own flag"


def test_namespace_comes_from_the_override_the_defaults_or_the_options(
        edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("task/bare")]
    assert build_manifests(request(entry), OPTIONS).namespace == "runs"
    with_default = entry.model_copy(update={
        "defaults": entry.defaults.model_copy(update={"namespace": "team-a"})})
    manifests = build_manifests(request(with_default), OPTIONS)
    assert manifests.namespace == manifests.job["metadata"]["namespace"] == "team-a"
    assert build_manifests(request(with_default), OPTIONS, namespace="other").namespace == (
        "other")


def test_what_cannot_run_on_kubernetes_is_a_clear_error(
        edge_entries: dict[EntryId, Entry]) -> None:
    bare = edge_entries[EntryId("task/bare")]
    imageless = bare.model_copy(update={
        "spec": bare.task.model_copy(update={"image": None}),
        "defaults": bare.defaults.model_copy(update={"image": None})})
    with pytest.raises(ManifestError, match=r"task/bare: no image"):
        build_manifests(request(imageless), OPTIONS)

    huge = bare.model_copy(update={"files": {"big.bin": "x" * (1024 * 1024 + 1)}})
    with pytest.raises(ManifestError, match=r"task/bare: files total \d+ bytes"):
        build_manifests(request(huge), OPTIONS)

    stack = edge_entries[EntryId("stack/plan-only")]
    with pytest.raises(ManifestError, match=r"stack/plan-only: .* repository URL"):
        build_manifests(request(stack), KubernetesOptions())


def by_kind(manifests: RunManifests) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in manifests.documents()}


def test_a_stack_pod_reaches_its_own_state_and_nothing_else(
        edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("stack/plan-only")]
    manifests = build_manifests(request(entry), OPTIONS)
    kinds = [d["kind"] for d in manifests.documents()]
    assert kinds == ["ServiceAccount", "Secret", "Lease", "Role", "RoleBinding", "Job"]
    objects = by_kind(manifests)
    secret = "tfstate-default-reconciler-plan-only"
    lease = f"lock-{secret}"
    assert objects["Secret"]["metadata"]["name"] == secret
    assert "data" not in objects["Secret"]  # made empty; the run writes the state
    assert objects["Lease"]["metadata"]["name"] == lease
    assert objects["Role"]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret],
         "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease],
         "verbs": ["get", "update"]},
    ]
    account = pod_of(manifests)["serviceAccountName"]
    assert objects["ServiceAccount"]["metadata"]["name"] == account
    binding = objects["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": objects["Role"]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                    "namespace": "runs"}]
    for obj in manifests.access:
        assert obj["metadata"]["namespace"] == "runs"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "reconciler"


def test_a_stack_naming_an_account_runs_as_it_with_its_state_bound_to_it(
        edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("stack/at-root")]
    named = entry.model_copy(update={
        "spec": entry.stack.model_copy(update={"service_account_name": "cloud-deployer"})})
    manifests = build_manifests(request(named), OPTIONS)
    pod = pod_of(manifests)
    assert pod["serviceAccountName"] == "cloud-deployer"
    assert pod["automountServiceAccountToken"] is True
    objects = by_kind(manifests)
    assert "ServiceAccount" not in objects  # the declared one is the operator's
    assert objects["RoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "cloud-deployer", "namespace": "runs"}]


def test_tasks_get_no_token_unless_they_name_an_account(
        edge_entries: dict[EntryId, Entry]) -> None:
    for name in ("bare", "many-files", "clone-https", "clone-ssh", LONG):
        manifests = build_manifests(request(edge_entries[EntryId(f"task/{name}")]), OPTIONS)
        pod = pod_of(manifests)
        assert pod["automountServiceAccountToken"] is False, name
        assert "serviceAccountName" not in pod, name
        assert manifests.access == ()
    named = build_manifests(request(edge_entries[EntryId("task/scheduled-big")]), OPTIONS)
    assert pod_of(named)["serviceAccountName"] == "batch-runner"
    assert pod_of(named)["automountServiceAccountToken"] is True


def test_no_run_gets_the_daemons_own_credentials(edge_entries: dict[EntryId, Entry]) -> None:
    task = edge_entries[EntryId("task/clone-https")]
    repository = task.task.repository
    assert repository is not None
    stolen = task.model_copy(update={"spec": task.task.model_copy(update={
        "repository": repository.model_copy(update={
            "url": "https://attacker.example/x.git", "credentials_secret": "repo-creds"})})})
    with pytest.raises(ManifestError, match=r"repository.credentialsSecret: repo-creds holds "
                                            r"the daemon's own credentials"):
        build_manifests(request(stolen), OPTIONS)
    stack = edge_entries[EntryId("stack/at-root")]
    ref = stack.stack.secret_env["TF_VAR_token"].model_copy(update={"secret": "repo-creds"})
    leaking = stack.model_copy(update={"spec": stack.stack.model_copy(update={
        "secret_env": {"TF_VAR_token": ref}})})
    with pytest.raises(ManifestError, match=r"secretEnv.TF_VAR_token: repo-creds"):
        build_manifests(request(leaking), OPTIONS)


def test_credentials_are_never_declared_for_plain_http(
        edge_entries: dict[EntryId, Entry]) -> None:
    task = edge_entries[EntryId("task/clone-https")]
    repository = task.task.repository
    assert repository is not None
    plain = task.model_copy(update={"spec": task.task.model_copy(update={
        "repository": repository.model_copy(update={"url": "http://git.example.com/a.git"})})})
    with pytest.raises(ManifestError, match=r"credentials are sent over https or ssh only"):
        build_manifests(request(plain), OPTIONS)


def test_an_entry_cannot_label_its_pod_as_the_daemon(edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("task/bare")]
    posing = entry.model_copy(update={"labels": {
        "app.kubernetes.io/name": "reconciler", "app.kubernetes.io/component": "daemon",
        "reconciler.io/kind": "stack", "team": "data"}})
    labels = pod_of(build_manifests(request(posing), OPTIONS)) and build_manifests(
        request(posing), OPTIONS).job["spec"]["template"]["metadata"]["labels"]
    assert "app.kubernetes.io/name" not in labels
    assert "app.kubernetes.io/component" not in labels
    assert labels["reconciler.io/kind"] == "task"
    assert labels["team"] == "data"


def named(entry: Entry, account: str) -> Entry:
    return entry.model_copy(update={
        "spec": entry.spec.model_copy(update={"service_account_name": account})})


def test_no_run_gets_the_daemons_account_or_another_stacks(
        edge_entries: dict[EntryId, Entry]) -> None:
    task = edge_entries[EntryId("task/bare")]
    stack = edge_entries[EntryId("stack/plan-only")]
    options = OPTIONS.model_copy(update={"daemon_service_account": "reconciler"})
    with pytest.raises(ManifestError, match=r"serviceAccountName: reconciler is the daemon's "
                                            r"own service account"):
        build_manifests(request(named(task, "reconciler")), options)
    for entry in (task, stack):
        with pytest.raises(ManifestError, match=r"reconciler-stack-at-root is the account of "
                                                r"another stack"):
            build_manifests(request(named(entry, "reconciler-stack-at-root")), options)
    own = build_manifests(request(named(stack, "reconciler-stack-plan-only")), options)
    assert pod_of(own)["serviceAccountName"] == "reconciler-stack-plan-only"


def test_the_daemons_account_is_read_from_its_token(tmp_path: Path) -> None:
    def token(claims: dict[str, Any]) -> Path:
        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
        path = tmp_path / "token"
        path.write_text(f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl")
        return path

    subject = {"sub": "system:serviceaccount:reconciler:reconciler-daemon"}
    assert token_account(token(subject)) == "reconciler-daemon"
    assert token_account(token({"sub": "alice"})) is None
    assert token_account(tmp_path / "missing") is None


def test_stack_pods_clone_a_plain_http_repository_without_the_password(
        edge_entries: dict[EntryId, Entry]) -> None:
    entry = edge_entries[EntryId("stack/plan-only")]
    for url in ("http://git.example.com/org/repo.git", "git://git.example.com/org/repo.git"):
        options = OPTIONS.model_copy(update={"source_url": url})
        clone = env_of(pod_of(build_manifests(request(entry), options))["initContainers"][0])
        assert "GIT_PASSWORD" not in clone
        assert clone["GIT_URL"] == url
