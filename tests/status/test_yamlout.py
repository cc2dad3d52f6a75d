"""The status writer's YAML: whatever goes in comes back from a real YAML loader unchanged."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.yamlout import dump

TRICKY = [
    "", " ", "yes", "No", "on", "null", "~", "true", "1", "1.0", "1e3", ".5", "0x1F", "-", "- x",
    "a: b", "a #b", "#x", "[x]", "{x}", "*x", "&x", "!x", "%x", "@x", "`x", "'x'", '"x"',
    "2026-11-25", "2026-11-25T16:00:00Z", "12:30", "task/hello", "exit code 0",
    "line one\nline two", "  indented\nnext", "trailing \nspaces", "\ttab", "nul\x00", "é ü 漢",
    "ends with newline\n", "two\n\nblank lines\n\n", "\n", "a\r\nb", "\ufeffbom", "x" * 500,
]


def load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def test_tricky_strings_round_trip() -> None:
    for value in TRICKY:
        data = {"value": value, "list": [value, {"nested": value}], value or "k": 1}
        assert load(dump(data)) == data, repr(value)


def test_plain_output_for_plain_values() -> None:
    text = dump({"phase": "Succeeded", "exitCode": 0, "ok": True, "none": None, "empty": [],
                 "map": {}, "addresses": ["terraform_data.app"],
                 "logTail": "hello\nworld"})
    assert text == (
        "phase: Succeeded\nexitCode: 0\nok: true\nnone: null\nempty: []\nmap: {}\n"
        "addresses:\n  - terraform_data.app\nlogTail: |-\n  hello\n  world\n"
    )


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                    st.floats(allow_nan=False, allow_infinity=False))
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), trees, max_size=6))
def test_any_plain_data_round_trips(data: dict[str, Any]) -> None:
    assert load(dump(data)) == data
