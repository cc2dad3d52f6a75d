"""Random hostile YAML through the loader: deep nesting, huge numbers, anchors and aliases,
odd types and tags, duplicate and merge keys, many documents, long strings, bad bytes.
Whatever comes in, only located errors come out, each file within a time bound generous
for a loaded 2-core machine; and the cheap screen never skips a document the loader would
have called ours."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.declarations.ours import claims, may_claim
from reconciler.declarations.parse import every_document

LOCATED = re.compile(r"^x\.yaml:[1-9]\d*:[1-9]\d*: \S")
TIME_BOUND = 20.0
"""Seconds for one file; the slowest example takes well under one on an idle machine."""
TIMES: list[float] = []

headers = st.sampled_from([
    "apiVersion: reconciler.io/v1alpha1\n", "apiVersion: reconciler.oi/v1alpha1\n",
    "apiversion: reconciler.io/v1alpha1\n", "api_version: reconcilr.io/v1\n",
    "apiVersion: reconciler.io/v1alpa1\n", "apiVersion: tekton.dev/v1beta1\n",
    "apiVersion: 12\n", "apiVersion: [reconciler.io/v1alpha1]\n", "",
])
kinds = st.sampled_from(["Task", "Stack", "Defaults", "task", "STACK", "Job", "[Task]", "~"])
fields = st.sampled_from([
    "command", "args", "env", "timeout", "lockTimeout", "retries", "path", "vars", "varFiles",
    "resources", "dependsOn", "schedule", "files", "tolerations", "drift", "<<", "image",
])
numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.sampled_from(["1e400", "-1e400", ".inf", "-.inf", ".nan", "-.nan", ".NaN", "0x1F",
                     "0o17", "1_000", "1e308", "99999999999999999999s", "1000000000d",
                     "1e-400", "2001-12-14t21:59:43.10-05:00", "2024-13-45"]),
    st.integers(0, 10**12).map(lambda n: f"{n}d{n}h{n}m{n}s"),
)
scalars = st.one_of(
    numbers,
    st.text(max_size=40).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.integers(0, 20_000).map(lambda n: "'" + "x" * n + "'"),
    st.sampled_from(['"\\x00"', '"\\ud800"', '"\\uDFFF"', "!!python/object:os.system x",
                     "!!python/object/apply:os.system [id]", "!!binary aGk=", "!foo bar",
                     "!!set {a, b}", "!!omap [{a: 1}]", "!!timestamp 2001-12-14", "*nowhere",
                     "&a [1, 2]", "*a", "null", "~", "yes", "", "{a: 1, a: 2}", "[*a, *a]",
                     "task/x", "stack/x", "../..", "/etc/passwd", "a/" + "b" * 300]),
)


def _nested(depth: int, style: str, leaf: str) -> str:
    if style == "flow-seq":
        return "[" * depth + leaf + "]" * depth
    if style == "flow-map":
        return "{k: " * depth + leaf + "}" * depth
    return "- " * depth + leaf  # compact block lists, all on one line


values = st.one_of(
    scalars,
    st.builds(_nested, st.integers(0, 120), st.sampled_from(["flow-seq", "flow-map", "block"]),
              scalars),
    st.lists(scalars, max_size=6).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.dictionaries(st.sampled_from(["a", "b", "1x", "A", "<<", "? [x]", ""]), scalars,
                    max_size=5).map(lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items())
                                    + "}"),
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines = [draw(headers), f"kind: {draw(kinds)}\n",
             f"metadata: {{name: {draw(st.sampled_from(['t', 'db', 'Bad', '', 'x' * 50]))}}}\n"]
    spec = draw(st.lists(st.tuples(fields, values), max_size=8))
    body = "".join(f"  {key}: {value}\n" for key, value in spec)
    lines.append("spec:\n" + body if body else draw(st.sampled_from(["spec: {}\n", "spec:\n", ""])))
    return "".join(lines)


@st.composite
def files(draw: st.DrawFn) -> bytes:
    docs = draw(st.lists(documents(), min_size=1, max_size=4))
    repeat = draw(st.sampled_from([1, 1, 1, 2, 600]))
    text = "---\n".join(docs * repeat)
    data = text.encode("utf-8", "surrogatepass")
    for action in draw(st.lists(st.sampled_from(["bom", "crlf", "tabs", "bad-utf8", "nul",
                                                 "cut", "anchors"]), max_size=3)):
        if action == "bom":
            data = b"\xef\xbb\xbf" + data
        elif action == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif action == "tabs":
            data = data.replace(b"  ", b"\t", 1)
        elif action == "bad-utf8":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + b"\xff\xc3(" + data[at:]
        elif action == "nul":
            data = data.replace(b"run", b"r\x00n")
        elif action == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        else:
            data += b"laughs:\n  a: &a [x, x, x, x, x, x, x, x]\n  b: &b [*a, *a, *a, *a, *a]\n"
    return data


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("hostile-fuzz") / "repo"
    folder.mkdir()
    yield folder
    if TIMES:
        ordered = sorted(TIMES)
        print(f"\nhostile fuzz: {len(TIMES)} files, median {ordered[len(ordered) // 2]:.3f} s, "
              f"slowest {ordered[-1]:.3f} s")


def _load_only_located(root: Path, data: bytes) -> None:
    (root / "x.yaml").write_bytes(data)
    started = time.monotonic()
    desired = DeclarationLoader().load(DirectorySource(root))
    elapsed = time.monotonic() - started
    TIMES.append(elapsed)
    for error in desired.errors:
        assert LOCATED.match(str(error)), str(error)
        assert len(str(error)) < 1000, str(error)[:300]
    for ident, errors in desired.invalid.items():
        assert errors, ident
    assert elapsed < TIME_BOUND


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=files())
@pytest.mark.timeout(600)
def test_structured_hostile_yaml_gives_only_located_errors(root: Path, data: bytes) -> None:
    _load_only_located(root, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=headers, tail=st.binary(max_size=3000))
@pytest.mark.timeout(600)
def test_random_bytes_give_only_located_errors(root: Path, header: str, tail: bytes) -> None:
    _load_only_located(root, header.encode() + b"kind: Task\n" + tail)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=files())
@pytest.mark.timeout(600)
def test_the_screen_never_skips_a_document_of_ours(data: bytes) -> None:
    parsed = every_document(data)
    if parsed is not None and any(claims(document) for _, document in parsed):
        assert may_claim(data)
