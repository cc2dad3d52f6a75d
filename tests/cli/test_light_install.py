"""PR checks install light: `validate`, `diff` and `render` run on the base dependencies, without
the Kubernetes client (`reconciler[kubernetes]`), and the Kubernetes executor says what to
install when it is missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.declarations.repo import sample_history

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample-repo"

# Runs the CLI with the Kubernetes client unimportable, as in an installation without the
# extra, and prints the top-level modules it loaded.
_PROBE = """
import importlib.abc, json, sys
class NoKubernetes(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kubernetes" or name.startswith("kubernetes."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoKubernetes())
import importlib.util
importlib.util.find_spec = (lambda real: lambda name, *a: None if name == "kubernetes"
                            else real(name, *a))(importlib.util.find_spec)
from reconciler.cli import main
try:
    main(sys.argv[1:])
except SystemExit as end:
    code = end.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}),
      file=sys.stderr)
"""


def _probe(*args: str) -> tuple[int, set[str], str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, timeout=120, check=False)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"]), done.stdout + done.stderr


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@cache
def _base_closure() -> frozenset[str]:
    """The distributions the base install brings: its requirements, and theirs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [_requirement_name(r) for r in project["dependencies"]]
    seen: set[str] = {"reconciler"}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or ():
            requirement = Requirement(text)
            # Extras, and requirements of other platforms, are not installed with it.
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_requirement_name(requirement.name))
    return frozenset(seen)


@cache
def _at_start() -> frozenset[str]:
    """What the interpreter loads before any command (site hooks of the virtualenv)."""
    done = subprocess.run([sys.executable, "-c", "import sys; print(*sys.modules)"],
                          capture_output=True, text=True, timeout=60, check=True)
    return frozenset(m.split(".")[0] for m in done.stdout.split())


def _outside_the_base(modules: set[str]) -> set[str]:
    modules = modules - _at_start()
    owners = metadata.packages_distributions()
    base = _base_closure()
    return {module for module in modules if module in owners
            and not {d.lower().replace("_", "-") for d in owners[module]} & base}


def test_the_kubernetes_client_is_an_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "kubernetes" not in {_requirement_name(r) for r in project["dependencies"]}
    assert [_requirement_name(r) for r in project["optional-dependencies"]["kubernetes"]] == [
        "kubernetes"]


@pytest.mark.parametrize("command", [
    ("validate", str(SAMPLE)),
    ("render", "--repo", str(SAMPLE), "stack/network"),
], ids=["validate", "render"])
def test_pr_checks_run_on_the_base_install(command: tuple[str, ...]) -> None:
    code, modules, output = _probe(*command)
    assert code == 0, output
    assert "kubernetes" not in modules
    assert _outside_the_base(modules) == set()


def test_diff_runs_on_the_base_install(tmp_path: Path) -> None:
    repo = sample_history(tmp_path / "decl")
    base = repo.git("rev-parse", "HEAD")
    (repo.root / "tasks").mkdir(exist_ok=True)
    repo.commit("unchanged")
    code, modules, output = _probe("diff", "--repo", str(repo.root), "--base", base,
                                   "--format", "markdown")
    assert code == 0, output
    assert _outside_the_base(modules) == set()


def test_the_kubernetes_executor_says_what_to_install(tmp_path: Path) -> None:
    code, _, output = _probe("logs", "task/x", "--executor", "kubernetes")
    assert code == 1, output  # as for any other setting `logs` cannot work with
    assert "pip install 'reconciler[kubernetes]'" in output
