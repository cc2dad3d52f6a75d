"""The layers contract covers the whole package, and docs/architecture.md shows it as it is."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "reconciler"


def _layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return [[m.strip() for m in re.split(r"[|:]", layer)] for layer in layers]


def _top_level_modules() -> set[str]:
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    return {f"reconciler.{name}" for name in names}


def test_every_module_of_the_package_is_in_a_layer() -> None:
    # A module in no layer is checked by no layer: it could import anything.
    layered = {module for layer in _layers() for module in layer}
    assert _top_level_modules() - layered == set()
    assert layered - _top_level_modules() == set(), "a layer names a module that is gone"


def test_the_architecture_page_lists_the_layers_in_their_order() -> None:
    table = [line for line in (ROOT / "docs" / "architecture.md").read_text().splitlines()
             if line.startswith("| `")]
    shown = [re.findall(r"`([a-z_]+)(?:\.py|/)`", line.split("|")[1]) for line in table]
    documented = [{f"reconciler.{name}" for name in names} for names in shown]
    assert documented == [set(layer) for layer in _layers()]
