"""A stack pod's entry point: a module without a backend gets the engine's own `kubernetes`
backend (a configuration the real engine accepts), one with a backend is left alone, and the
stack runner takes over the process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.executors.kubernetes.stackstate import BACKEND_FILE, prepare
from reconciler.stacks import declares_backend

MODULE = 'resource "terraform_data" "x" {\n  input = "a"\n}\n'


def module(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.tf").write_text(MODULE + extra)
    return root


def test_a_module_without_a_backend_gets_the_kubernetes_backend(tmp_path: Path) -> None:
    folder = module(tmp_path / "net")
    assert not declares_backend(folder)

    assert prepare(folder, namespace="team-a", suffix="reconciler-net") is True

    backend = json.loads((folder / BACKEND_FILE).read_text())["terraform"]["backend"]
    assert backend == {"kubernetes": {
        "secret_suffix": "reconciler-net", "namespace": "team-a", "in_cluster_config": True,
        "labels": {"app.kubernetes.io/managed-by": "reconciler",
                   "reconciler.io/stack-state": "reconciler-net"}}}
    assert declares_backend(folder)  # so the runner keeps no state of its own


def test_a_module_with_its_own_backend_is_left_alone(tmp_path: Path) -> None:
    folder = module(tmp_path / "net", 'terraform {\n  backend "s3" {}\n}\n')
    assert prepare(folder, namespace="team-a", suffix="x") is False
    assert not (folder / BACKEND_FILE).exists()


@pytest.mark.engine
def test_the_engine_accepts_the_backend_configuration(tmp_path: Path) -> None:
    engine = shutil.which("reconciler-terraform", path=str(Path(sys.executable).parent))
    if engine is None:
        pytest.skip("the bundled engine is not installed")
    folder = module(tmp_path / "net")
    prepare(folder, namespace="team-a", suffix="reconciler-net")
    config = tmp_path / "terraformrc"
    config.touch()
    result = subprocess.run(
        [engine, "init", "-input=false", "-no-color"], cwd=folder, capture_output=True,
        text=True, timeout=120, check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CHECKPOINT_DISABLE": "1",
             "TF_CLI_CONFIG_FILE": str(config)},
    )
    # Outside a cluster the backend cannot connect; every argument was understood.
    assert result.returncode != 0
    assert "in-cluster configuration" in result.stderr
    assert "Extraneous" not in result.stderr


def run_entry_point(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_NAMESPACE"}
    return subprocess.run(
        [sys.executable, "-m", "reconciler.executors.kubernetes.stackstate", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False, env=env,
    )


def test_the_stack_runner_takes_over(tmp_path: Path) -> None:
    folder = module(tmp_path / "net")
    result = run_entry_point(folder, "--state-suffix", "s", "--namespace", "ns", "--", "--help")

    assert result.returncode == 0, result.stderr
    assert "state: kubernetes backend, Secret tfstate-default-s in namespace ns" in (
        result.stdout)
    assert "usage: reconciler stack-run" in result.stdout
    assert (folder / BACKEND_FILE).exists()


def test_the_namespace_is_required(tmp_path: Path) -> None:
    result = run_entry_point(module(tmp_path / "net"), "--state-suffix", "s", "--", "--help")
    assert result.returncode == 2
    assert "namespace is unknown" in result.stderr
