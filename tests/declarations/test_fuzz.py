"""Whatever a user does to a valid declaration, the loader answers with located problems of
its own, never an exception, and never loses track of the entries in the other files."""

from __future__ import annotations

import datetime
import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import DesiredState
from reconciler.declarations.loader import DeclarationLoader

SAMPLE = Path(__file__).resolve().parents[2] / "sample-repo"
TARGETS = sorted(str(p.relative_to(SAMPLE)) for p in SAMPLE.rglob("*.yaml"))

keys = st.sampled_from([
    "apiVersion", "kind", "metadata", "name", "spec", "command", "env", "files", "path",
    "dependsOn", "schedule", "timeout", "vars", "drift", "secretEnv", "resources", "limits",
    "cpu", "memory", "labels", "retries", "varFiles", "remediate", "apply", "engine",
]) | st.text(min_size=1, max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.dates(), st.datetimes(timezones=st.just(datetime.UTC)),
    st.sampled_from(["task/x", "stack/network", "30m", "0 3 * * *", "../..", "/etc",
                     "stacks/network", "reconciler.io/v1alpha1", "Task", "Stack", "Defaults",
                     "data/sales.csv", "scripts/report.py", "task/check-data"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*at, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*at, index))
    return found


def _mutate(document: Any, data: st.DataObject) -> Any:
    path = data.draw(st.sampled_from(_paths(document)))
    action = data.draw(st.sampled_from(["replace", "delete", "add", "rename"]))
    if not path:
        return data.draw(values) if action == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "replace":
        parent[last] = data.draw(values)
    elif action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(keys)] = data.draw(values)
    elif action == "rename" and isinstance(parent, dict):
        parent[data.draw(keys)] = parent.pop(last)
    return document


def _dump(documents: list[Any]) -> str:
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump_all(documents, out)
    return out.getvalue()


def _check(root: Path, changed: str, desired: DesiredState, before: DesiredState) -> None:
    """Every problem is located inside the files; nothing valid elsewhere is lost."""
    text = (root / changed).read_bytes()
    lines = text.count(b"\n") + 1
    for error in desired.errors:
        assert error.location.line >= 1, error
        assert error.location.column >= 1, error
        assert error.message
        if error.location.path == changed:
            assert error.location.line <= lines + 1, error
    # Entries of the files left alone are still accounted for: valid, or invalid with a
    # reason; never silently gone.
    known = set(desired.entries) | set(desired.invalid)
    for ident, entry in before.entries.items():
        if entry.location.path != changed:
            assert ident in known, ident


def _load(root: Path) -> DesiredState:
    return DeclarationLoader().load(DirectorySource(root))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DesiredState]:
    root = tmp_path_factory.mktemp("fuzz") / "repo"
    shutil.copytree(SAMPLE, root)
    return root, _load(root)


@contextmanager
def edited(root: Path, target: str, content: bytes) -> Iterator[None]:
    original = (root / target).read_bytes()
    (root / target).write_bytes(content)
    try:
        yield
    finally:
        (root / target).write_bytes(original)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(TARGETS), data=st.data())
def test_structural_mutations(
    sample: tuple[Path, DesiredState], target: str, data: st.DataObject
) -> None:
    root, before = sample
    documents = list(YAML(typ="safe").load_all(root / target))
    for _ in range(data.draw(st.integers(1, 3))):
        documents = [_mutate(d, data) for d in documents]
    with edited(root, target, _dump(documents).encode()):
        _check(root, target, _load(root), before)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.sampled_from(TARGETS),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 3), st.binary(max_size=4)),
        min_size=1, max_size=4,
    ),
)
def test_text_mutations(
    sample: tuple[Path, DesiredState], target: str, edits: list[tuple[float, int, bytes]]
) -> None:
    root, before = sample
    text = (root / target).read_bytes()
    for where, cut, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut:]
    with edited(root, target, text):
        _check(root, target, _load(root), before)
