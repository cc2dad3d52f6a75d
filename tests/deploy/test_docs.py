"""What docs/deploy.md tells people to apply or commit is valid: Kubernetes objects against the
real schemas, declarations with `reconciler validate`, paths and alerts that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.support import (
    DEPLOY,
    DOCS,
    KUBERNETES_VERSIONS,
    MONITORING,
    REPO,
    fenced_blocks,
    load_yaml,
    load_yaml_all,
    rendered,
)

DEPLOY_DOC = DOCS / "deploy.md"


def documents() -> list[dict[str, object]]:
    return [d for block in fenced_blocks(DEPLOY_DOC.read_text(), "yaml")
            for d in load_yaml_all(block)]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_in_the_docs_are_valid(version: str) -> None:
    objects = [d for d in documents() if d.get("kind") != "Kustomization"
               and not str(d.get("apiVersion", "")).startswith("reconciler.io/")]
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_ingress_in_the_docs_reaches_the_hook_path_only() -> None:
    ingress = next(d for d in documents() if d.get("kind") == "Ingress")
    service = next(o for o in rendered("base") if o["kind"] == "Service")
    [rule] = ingress["spec"]["rules"]  # type: ignore[index]
    [path] = rule["http"]["paths"]
    assert path["path"] == "/hooks/git"
    assert path["pathType"] == "Exact"
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_declarations_in_the_docs_pass_reconciler_validate(tmp_path: Path) -> None:
    declarations = [d for d in documents()
                    if str(d.get("apiVersion", "")).startswith("reconciler.io/")]
    assert {d["kind"] for d in declarations} >= {"Defaults", "Stack"}
    for block in fenced_blocks(DEPLOY_DOC.read_text(), "yaml"):
        if "apiVersion: reconciler.io/" in block:
            (tmp_path / "reconciler.yaml").write_text(block)
    for doc in declarations:
        if doc["kind"] == "Stack":
            module = tmp_path / doc["spec"]["path"]  # type: ignore[index]
            module.mkdir(parents=True)
            (module / "main.tf").write_text('resource "terraform_data" "x" {}\n')
    result = subprocess.run([sys.executable, "-m", "reconciler", "validate", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stacks_in_the_docs_need_no_shared_runner_account() -> None:
    """A stack's pod runs as an account of its own, made by the daemon: the docs tell no one to
    share an account that reads the namespace's Secrets."""
    stacks = [d for d in documents() if d.get("kind") == "Stack"]
    assert stacks
    for stack in stacks:
        assert "serviceAccountName" not in stack["spec"]  # type: ignore[operator]
    accounts = {o["metadata"]["name"] for o in rendered("base") if o["kind"] == "ServiceAccount"}
    assert accounts == {"reconciler"}


def test_paths_named_in_the_docs_exist() -> None:
    for doc in (DEPLOY_DOC, DOCS / "alerts.md"):
        text = doc.read_text()
        for path in set(re.findall(r"`((?:deploy|docs)/[\w./-]+)`", text)):
            if "production" in path:
                continue  # the overlay the reader creates
            assert (REPO / path).exists(), f"{doc.name} names {path}, which does not exist"
    assert (DEPLOY / "overlays" / "ha").is_dir()


def test_the_alert_table_lists_every_alert() -> None:
    names = {r["alert"] for g in load_yaml((MONITORING / "rules.yaml").read_text())["groups"]
             for r in g["rules"]}
    listed = set(re.findall(r"^\| \[(\w+)\]", (DOCS / "alerts.md").read_text(), re.M))
    assert listed == names
