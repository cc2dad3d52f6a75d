"""The first reading (`fastparse`, PyYAML's C parser) gives the data ruamel's reading gives,
or defers to it: over random YAML texts, made of the tokens where YAML 1.1 and 1.2, or the
two libraries, could part ways."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.declarations import fastparse, parse
from reconciler.declarations.limits import MAX_DOCUMENTS

TOKENS = [
    "a", "key", "yes", "no", "on", "off", "y", "n", "true", "True", "TRUE", "false", "tRUE",
    "null", "Null", "NULL", "~", "", "010", "0o10", "0x1F", "0b11", "1_000", "+5", "-0", "00",
    "12", "-7", "99999999999999999999999", "1.5", "1.", "-2.50", ".5", "1e3", "1.0e+3", ".inf",
    "-.Inf", ".nan", "190:20:30", "2024-01-02", "2024-01-02T10:00:00Z", "2001-12-14 21:59:43.10 -5",
    "<<", "=", "!", "'quoted'", '"dq\\n"', '"\\x41"', "'it''s'", "!!str 12", "!!int 12",
    "!!int '7'", "!!float 1", "!!bool yes", "!!null x", "!!binary aGk=", "!foo bar",
    "!!timestamp 2024-01-02", "&a 1", "*a", "&b [1, 2]", "*b", "|\n  text\n", ">-\n  folded\n",
    "[]", "{}", "[1, yes, ~]", "{a: 1, b: on}", "a b", "a: b", "- x", "? complex", "#c",
    "%", "@x", "`x", "\t", "reconciler.io/v1alpha1", "Task", "ü", "\u2028",
]
keys = st.sampled_from(["a", "b", "kind", "apiVersion", "<<", "1", "yes", "~", "'a'", "a"])
scalars = st.sampled_from(TOKENS)


@st.composite
def block(draw: st.DrawFn, depth: int = 0) -> str:
    """A block collection (or a scalar) indented for `depth`."""
    pad = "  " * depth
    shape = draw(st.sampled_from(["map", "seq", "scalar"] if depth < 3 else ["scalar"]))
    if shape == "scalar":
        return " " + draw(scalars) + "\n"
    lines = ["\n"]
    for _ in range(draw(st.integers(1, 4))):
        inner = draw(block(depth + 1))
        lead = f"{pad}{draw(keys)}:" if shape == "map" else f"{pad}-"
        lines.append(lead + inner)
    return "".join(lines)


@st.composite
def texts(draw: st.DrawFn) -> str:
    documents = []
    for _ in range(draw(st.integers(0, 3))):
        head = draw(st.sampled_from(["", "---\n", "--- ", "%YAML 1.1\n---\n", "--- !!map\n"]))
        documents.append(head + draw(block()).lstrip("\n").lstrip(" "))
    return draw(st.sampled_from(["", "...\n"])).join(documents)


noise = st.text(alphabet="ab:- \n\t[]{},&*!#'\"|>?%@~01.eE+x_<=T", max_size=60)


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down (True is not 1, nan is nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(a[ka], b[kb]) for ka, kb in zip(a, b, strict=True))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def ruamel(text: str) -> list[tuple[int, int, Any]] | Exception:
    try:
        return list(parse._each_document(text))
    except Exception as err:  # the reading the fast one must agree with or defer to
        return err


def check(text: str) -> None:
    data = text.encode()
    fast = fastparse.documents(data, parse._IMPLICIT, parse._ANY_FIRST, parse._intern)
    if fast is None:
        return
    slow = ruamel(text)
    assert not isinstance(slow, Exception), f"fast read {fast!r}, ruamel raised {slow!r}"
    assert same(fast, slow), f"{text!r}: fast {fast!r} != ruamel {slow!r}"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts())
@example("a: 1\na: 2\n")
@example("a: &x 1\nb: *x\n")
@example("<<: {a: 1}\n")
@example("\ufeffa: 010\n")
def test_structured_texts_read_alike(text: str) -> None:
    check(text)


@settings(max_examples=1500, deadline=None)
@given(noise)
@example("[?]")
@example("[a, ? ]")
@example("{a: [[?]]}")
def test_noise_reads_alike(text: str) -> None:
    check(text)


def test_it_answers_for_ordinary_declarations() -> None:
    """It must not defer on what repositories hold, or it saves nothing."""
    text = ("apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: t, labels: {a: b}}\n"
            "spec:\n  command: [python3, -c, 'print(1) && x']\n  retries: 2\n  cpu: 0.5\n"
            "  suspend: false\n  env: {A: ~}\n---\nkind: Stack\n")
    fast = fastparse.documents(text.encode(), parse._IMPLICIT, parse._ANY_FIRST, parse._intern)
    assert fast is not None
    assert same(fast, ruamel(text))


def test_too_many_documents_defer() -> None:
    text = "---\na: 1\n" * (MAX_DOCUMENTS + 1)
    assert fastparse.documents(text.encode(), parse._IMPLICIT, parse._ANY_FIRST,
                               parse._intern) is None
    assert isinstance(ruamel(text), Exception)
