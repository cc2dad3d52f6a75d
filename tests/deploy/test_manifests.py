"""deploy/base and its overlays: they render, every object is valid Kubernetes, and they hang
together the way a platform team expects (selectors, references, probes, pod security)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from reconciler import __version__
from reconciler.cli import ENV_PREFIX, build_parser
from tests.deploy.podsecurity import restricted_violations
from tests.deploy.support import (
    CLUSTER_SCOPED,
    CRD_KINDS,
    DEPLOY,
    DOCS,
    KUBERNETES_VERSIONS,
    config_map_data,
    daemon_container,
    fenced_blocks,
    find,
    find_all,
    kustomizations,
    kustomize,
    load_yaml,
    overlays,
    pod_spec,
    rendered,
)

NAMESPACE = "reconciler"


@pytest.mark.parametrize("path", kustomizations())
def test_every_kustomization_renders(path: str) -> None:
    objects = rendered(path)
    assert objects, f"deploy/{path} renders nothing"
    for obj in objects:
        for key in ("apiVersion", "kind"):
            assert obj.get(key), obj
        assert obj["metadata"].get("name"), obj


def test_the_overlays_are_the_documented_ones() -> None:
    assert set(overlays()) >= {"base", "overlays/single", "overlays/ha"}
    assert {"monitoring"} <= set(kustomizations())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", kustomizations())
def test_rendered_objects_validate_against_the_kubernetes_schemas(path: str, version: str) -> None:
    for obj in rendered(path):
        if obj["kind"] in CRD_KINDS:
            continue  # not in the core schemas: tests/deploy/test_monitoring.py checks them
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"deploy/{path}: {obj['kind']}/{obj['metadata']['name']} is invalid "
                        f"for Kubernetes {version}: {error.message}")


@pytest.mark.parametrize("path", kustomizations())
def test_namespaced_objects_share_one_namespace(path: str) -> None:
    for obj in rendered(path):
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]


@pytest.mark.parametrize("path", overlays())
def test_selectors_find_the_daemon_pods(path: str) -> None:
    objects = rendered(path)
    deployment = find(objects, "Deployment", "reconciler")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= pod_labels.items()

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(find(objects, "Service", "reconciler")["spec"]["selector"])
    assert selects(find(objects, "NetworkPolicy", "reconciler")["spec"]["podSelector"]
                   ["matchLabels"])
    for budget in find_all(objects, "PodDisruptionBudget"):
        assert selects(budget["spec"]["selector"]["matchLabels"])
    for spread in pod_spec(objects).get("topologySpreadConstraints", []):
        assert selects(spread["labelSelector"]["matchLabels"])


@pytest.mark.parametrize("path", overlays())
def test_references_between_objects_resolve(path: str) -> None:
    objects = rendered(path)
    pod = pod_spec(objects)
    find(objects, "ServiceAccount", pod["serviceAccountName"])
    assert config_map_data(objects)  # envFrom names a ConfigMap that is rendered
    for binding in find_all(objects, "RoleBinding"):
        find(objects, binding["roleRef"]["kind"], binding["roleRef"]["name"])
        for subject in binding["subjects"]:
            find(objects, subject["kind"], subject["name"])
            assert subject["namespace"] == NAMESPACE
    # The one object you create yourself (docs/deploy.md) is the credentials Secret.
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secrets == ["reconciler-credentials"]
    assert "reconciler-credentials" in (DOCS / "deploy.md").read_text()
    service = find(objects, "Service", "reconciler")
    ports = {p["name"] for p in daemon_container(objects)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


@pytest.mark.parametrize("path", overlays())
def test_the_pod_meets_the_restricted_pod_security_standard(path: str) -> None:
    objects = rendered(path)
    namespace = find(objects, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = pod_spec(objects)
    assert restricted_violations(pod) == []
    container = daemon_container(objects)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    # Everything the daemon writes lands on an emptyDir: state dir, HOME and /tmp.
    config = config_map_data(objects)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    home = next(e["value"] for e in container["env"] if e["name"] == "HOME")
    for path_ in (config["RECONCILER_STATE_DIR"], home, "/tmp"):
        assert mounts.get(path_) in empty_dirs, f"{path_} is not a writable emptyDir"


def test_the_restricted_check_catches_what_admission_would_reject() -> None:
    objects = rendered("base")
    pod = pod_spec(objects)
    loose = {**pod, "hostNetwork": True, "volumes": [*pod["volumes"],
                                                       {"name": "h", "hostPath": {"path": "/"}}]}
    container = {**daemon_container(objects), "securityContext": {"privileged": True}}
    loose["containers"] = [container]
    problems = restricted_violations(loose)
    assert "pod sets hostNetwork" in problems
    assert any("hostPath" in p for p in problems)
    assert "reconciler: privileged" in problems
    assert "reconciler: allowPrivilegeEscalation is not false" in problems


@pytest.mark.parametrize("path", overlays())
def test_probes_resources_and_shutdown(path: str) -> None:
    objects = rendered(path)
    container = daemon_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # The daemon must listen on the pod's address, on the probed port.
    listen = config_map_data(objects)["RECONCILER_LISTEN"]
    host, _, port = listen.rpartition(":")
    assert host == "0.0.0.0"  # noqa: S104 - the pod must listen on its own address
    assert int(port) == ports["http"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory", "ephemeral-storage"} <= set(container["resources"][bound])
    assert pod_spec(objects)["terminationGracePeriodSeconds"] >= 30


def _run_parser() -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = commands.choices["run"]
    return parser


def _run_args_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_parser().parse_args(["run"])


@pytest.mark.parametrize("path", overlays())
def test_every_setting_is_a_real_run_flag(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon reads the rendered configuration exactly as `reconciler run` would."""
    objects = rendered(path)
    container = daemon_container(objects)
    env = dict(config_map_data(objects))
    for item in container.get("env", []):
        if item["name"].startswith(ENV_PREFIX):
            env[item["name"]] = item.get("value", "from-the-downward-api")
    options = [o for action in _run_parser()._actions for o in action.option_strings]
    flags = {ENV_PREFIX + o[2:].replace("-", "_").upper() for o in options if o.startswith("--")}
    assert set(env) <= flags, f"not flags of `reconciler run`: {sorted(set(env) - flags)}"
    # RECONCILER_REPO is the one setting every install adds (docs/deploy.md).
    env["RECONCILER_REPO"] = "https://git.example.com/platform/declarations.git"
    args = _run_args_from(env, monkeypatch)
    assert args.executor == "kubernetes"
    assert args.state_dir == "/var/lib/reconciler"
    assert args.webhook_secret_file.startswith("/etc/reconciler/credentials/")
    assert args.once is False


def test_single_runs_one_replica_without_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = rendered("overlays/single")
    deployment = find(objects, "Deployment", "reconciler")
    assert deployment["spec"]["replicas"] == 1
    # Without leader election, old and new pods must never run at once.
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "RECONCILER_LEADER_ELECT" not in config_map_data(objects)
    assert not find_all(objects, "PodDisruptionBudget")


def test_ha_runs_two_replicas_behind_a_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = rendered("overlays/ha")
    deployment = find(objects, "Deployment", "reconciler")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {**config_map_data(objects), "RECONCILER_REPO": "https://git.example.com/x.git"}
    assert _run_args_from(env, monkeypatch).leader_elect is True
    budget = find(objects, "PodDisruptionBudget", "reconciler")
    assert 0 < budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    spread = pod_spec(objects)["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spread} >= {"kubernetes.io/hostname"}


@pytest.mark.parametrize("path", overlays())
def test_the_image_is_this_release(path: str) -> None:
    image = daemon_container(rendered(path))["image"]
    assert image.rsplit(":", 1)[1] == __version__


def _docs_overlay() -> str:
    blocks = [b for b in fenced_blocks((DOCS / "deploy.md").read_text(), "yaml")
              if "kind: Kustomization" in b]
    assert len(blocks) == 1, "docs/deploy.md shows one kustomization of your own"
    return blocks[0]


def test_the_overlay_in_the_docs_configures_a_working_install(tmp_path: Path) -> None:
    """The install path of docs/deploy.md: an overlay of your own on top of overlays/ha."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    mine = tmp_path / "deploy" / "overlays" / "production"
    mine.mkdir()
    text = _docs_overlay()
    (mine / "kustomization.yaml").write_text(text)
    overlay = load_yaml(text)
    objects = kustomize(mine)
    for obj in objects:
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)
    config = config_map_data(objects)
    literals = dict(x.split("=", 1) for g in overlay["configMapGenerator"] for x in g["literals"])
    assert literals["RECONCILER_REPO"]
    assert config["RECONCILER_REPO"] == literals["RECONCILER_REPO"]
    assert config["RECONCILER_EXECUTOR"] == "kubernetes"  # merged into, not replacing, the base
    image = overlay["images"][0]
    assert daemon_container(objects)["image"] == f"{image['newName']}:{image['newTag']}"
    # Every credential file the configuration names is a key of the mounted Secret.
    mount = next(m["mountPath"] for m in daemon_container(objects)["volumeMounts"]
                 if m["name"] == "credentials")
    files = [v for k, v in config.items() if k.endswith("_FILE")]
    assert files
    assert all(f.startswith(mount + "/") for f in files)
    created = _secret_keys_created_in_docs()
    assert {f.rsplit("/", 1)[1] for f in files} <= created


def _secret_keys_created_in_docs() -> set[str]:
    text = (DOCS / "deploy.md").read_text()
    command = re.search(r"kubectl[^\n]*create secret generic reconciler-credentials(.*?)\n\n",
                        text, re.S)
    assert command, "docs/deploy.md shows how to create the credentials Secret"
    return set(re.findall(r"--from-(?:file|literal)=([\w.-]+)=", command.group(1)))


def test_a_policy_set_as_the_docs_say_is_mounted_where_the_daemon_reads_it(
        tmp_path: Path) -> None:
    """docs/deploy.md: an overlay replaces the `reconciler-policy` ConfigMap with its own
    policy.yaml; the Deployment mounts it (by its hashed name) where RECONCILER_POLICY says."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    mine = tmp_path / "deploy" / "overlays" / "production"
    mine.mkdir()
    (mine / "policy.yaml").write_text(
        "apiVersion: reconciler.io/v1alpha1\nkind: Policy\nspec:\n  namespaces: [runs]\n")
    (mine / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../ha]\nconfigMapGenerator:\n"
        "  - {name: reconciler-policy, behavior: replace, files: [policy.yaml]}\n")
    objects = kustomize(mine)
    path = config_map_data(objects)["RECONCILER_POLICY"]
    mount = next(m for m in daemon_container(objects)["volumeMounts"] if m["name"] == "policy")
    assert path == f"{mount['mountPath']}/policy.yaml"
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "policy")
    generated = find(objects, "ConfigMap", volume["configMap"]["name"])
    assert generated["metadata"]["name"].startswith("reconciler-policy-")  # rolls on change
    assert "namespaces: [runs]" in generated["data"]["policy.yaml"]


def test_the_shipped_policy_is_valid_and_states_the_safe_defaults() -> None:
    from reconciler.policy.file import load_policy
    from reconciler.policy.model import DEFAULT_POLICY

    assert load_policy(DEPLOY / "base" / "policy.yaml") == DEFAULT_POLICY
