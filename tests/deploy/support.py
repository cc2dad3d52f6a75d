"""Shared helpers of the deploy/ tests: the pinned tools, rendered kustomizations, lookups."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MONITORING = DEPLOY / "monitoring"
DOCS = REPO / "docs"
KUBERNETES_VERSIONS = ("1.29", "1.33")
"""The oldest Kubernetes minor the manifests promise to work on, and the one we test against."""

CRD_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding"})


def tool(name: str) -> str:
    """The pinned tool from `.tools/bin` (scripts/install-test-deps.sh), else one on PATH."""
    search = os.pathsep.join([str(REPO / ".tools" / "bin"), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(f"{name} not found: run `bash scripts/install-test-deps.sh` (make test does)")
    return found


def load_yaml(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def load_yaml_all(text: str) -> list[Any]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None]


def kustomize(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize PATH`, parsed. Fails the test with kustomize's own message."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return load_yaml_all(result.stdout)


@functools.cache
def _rendered(relative: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(DEPLOY / relative))


def rendered(relative: str) -> list[dict[str, Any]]:
    """The objects of `deploy/<relative>`, rendered once per test process."""
    return list(_rendered(relative))


def kustomizations() -> list[str]:
    """Every folder under deploy/ that kustomize can build, relative to deploy/."""
    return sorted(
        str(p.parent.relative_to(DEPLOY))
        for p in DEPLOY.rglob("kustomization.yaml")
        if "components" not in p.parts
    )


def overlays() -> list[str]:
    """The installable variants of the daemon: the base and every overlay."""
    return ["base", *sorted(str(p.relative_to(DEPLOY)) for p in (DEPLOY / "overlays").iterdir())]


def find(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind
               and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def find_all(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment", "reconciler")["spec"]["template"]["spec"]
    return spec


def daemon_container(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(objects)["containers"]
    container: dict[str, Any] = next(c for c in containers if c["name"] == "reconciler")
    return container


def config_map_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The ConfigMap the daemon container reads its RECONCILER_* settings from."""
    names = [e["configMapRef"]["name"] for e in daemon_container(objects).get("envFrom", [])]
    assert len(names) == 1, names
    data: dict[str, str] = find(objects, "ConfigMap", names[0]).get("data", {})
    return data


def fenced_blocks(markdown: str, language: str) -> Iterator[str]:
    """The bodies of ```language fenced blocks of a Markdown text."""
    lines = iter(markdown.splitlines())
    for line in lines:
        if line.strip() == f"```{language}":
            body = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                body.append(inner)
            yield "\n".join(body) + "\n"
