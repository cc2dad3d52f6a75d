"""The fast YAML path reads exactly what ruamel's own safe loader reads, and the pure
Python fallback (for interpreters without the C extension) reads the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.declarations import parse

SAMPLE = Path(__file__).resolve().parents[2] / "sample-repo"
SCALARS = """apiVersion: reconciler.io/v1alpha1
kind: Task
plain: [yes, no, true, False, ~, null, '', 010, 0o10, 0x1F, 1.5, .inf, -.Inf, 1e3, x]
dates: [2024-01-01, '12:30', +1, -0, 1_000]
stamp: 2001-12-14t21:59:43.10-05:00
tagged: !!str 12
empty:
anchors: {a: &x [1, 2], b: *x}
merged: {<<: {a: 1}, b: 2}
---
not: ours
---
apiVersion: reconciler.io/v1alpha1
kind: Stack
"""


def expected(text: str) -> list[tuple[int, object]]:
    documents = list(YAML(typ="safe", pure=True).load_all(text))
    return [(i, d) for i, d in enumerate(documents) if isinstance(d, dict)
            and str(d.get("apiVersion", "")).startswith("reconciler.io/")]


@pytest.mark.parametrize("fast", [True, False], ids=["c-parser", "pure-python"])
def test_reads_what_ruamel_reads(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast:
        monkeypatch.setattr(parse, "CParser", None)
    texts = [SCALARS] + [p.read_text() for p in sorted(SAMPLE.rglob("*.yaml"))]
    for text in texts:
        raw = parse.parse_file(text.encode())
        assert raw.problem is None
        assert [(d.index, d.data) for d in raw.documents] == expected(text)
    raw = parse.parse_file(SCALARS.encode())
    assert [d.line for d in raw.documents] == [1, 13]


@pytest.mark.parametrize("fast", [True, False], ids=["c-parser", "pure-python"])
def test_problems_are_located(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast:
        monkeypatch.setattr(parse, "CParser", None)
    bad_date = parse.parse_file(b"apiVersion: reconciler.io/v1alpha1\nwhen: 2024-13-01\n")
    assert bad_date.problem == parse.SyntaxProblem(
        2, 7, "invalid YAML: cannot read '2024-13-01': month must be in 1..12")
    aliases = "apiVersion: reconciler.io/v1alpha1\na0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    aliases += "".join(f"a{i + 1}: &a{i + 1} [{', '.join([f'*a{i}'] * 10)}]\n" for i in range(6))
    bomb = parse.parse_file(aliases.encode())
    assert bomb.problem == parse.SyntaxProblem(
        1, 1, "the document has more than 100000 values once aliases are expanded")
