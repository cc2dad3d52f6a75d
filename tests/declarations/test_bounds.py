"""The bounds of `limits`, each where it is checked: durations, quantities and paths in the
fields, nesting depth before the composer runs, errors per file, cycles reported once."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.declarations.depth import bounded, deepest, too_deep
from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.fields import check_relative_path, parse_duration
from reconciler.declarations.limits import MAX_DEPTH, MAX_ERRORS_PER_FILE
from reconciler.declarations.loader import DeclarationLoader
from reconciler.declarations.positions import SourceMap
from tests.declarations.repo import HEADER, Repo, task

CMD = "  command: [run]\n"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("1h30m", 5400), ("29d23h59m60s", 30 * 86400)]
)
def test_durations_up_to_thirty_days(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["31d", "1000000000d", "99999999999999999999s", "9" * 5000 + "s"])
def test_longer_durations_are_refused_with_the_limit(text: str) -> None:
    with pytest.raises(ValueError, match="longer than the limit of 30d"):
        parse_duration(text)


def test_path_bounds() -> None:
    assert check_relative_path("a/" + "b" * 255) == "a/" + "b" * 255
    with pytest.raises(ValueError, match="longer than 255 bytes"):
        check_relative_path("a/" + "é" * 128)
    with pytest.raises(ValueError, match="the limit is 4096"):
        check_relative_path("/".join(["abcdefgh"] * 500))


@pytest.mark.parametrize(
    ("value", "ok"),
    [("1E", True), ("1000P", True), ("1Ei", False), ("1e308", False), ("1e19", False),
     ("900000000000000000000m", True), ("1e-400", True), ("1" * 65, False)],
)
def test_quantities_up_to_one_exa(repo: Repo, value: str, ok: bool) -> None:
    repo.write({"t.yaml": task("t", CMD + f"  resources: {{limits: {{memory: '{value}'}}}}\n")})
    errors = [str(e) for e in repo.load().errors]
    assert not errors if ok else errors, errors


# Nesting: the byte screen never lets through what nests too deeply.


def _nested(draw: Any, depth: int) -> Any:
    value: Any = draw(st.sampled_from(["x", 1, None]))
    for _ in range(depth):
        value = draw(st.sampled_from([[value], {"k": value}, [1, value], {"a": 1, "b": value}]))
    return value


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    depth=st.integers(0, MAX_DEPTH + 8),
    flow=st.sampled_from([None, True, False]),
)
def test_the_depth_screen_is_sound(data: st.DataObject, depth: int, flow: bool | None) -> None:
    value = _nested(data.draw, depth)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = flow
    out = io.StringIO()
    yaml.dump({"spec": value}, out)
    text = out.getvalue()
    levels = depth + 1  # the document's own mapping
    if bounded(text.encode()):
        assert levels <= MAX_DEPTH
    assert (deepest(text) is None) == (levels <= MAX_DEPTH)
    assert (too_deep(text.encode(), text) is None) == (levels <= MAX_DEPTH)


def test_ordinary_files_pass_the_screen_uncounted() -> None:
    text = task("t", CMD + "  env: {A: b}\n  files:\n    run.py: |\n      def f():\n"
                "          return [1, {'a': 2}]\n  dependsOn: [task/x, stack/y]\n")
    assert bounded(text.encode())


def test_a_file_nested_too_deeply_is_one_located_error(repo: Repo) -> None:
    deep = "[" * 30_000 + "]" * 30_000
    text = f"{HEADER}kind: Stack\nmetadata: {{name: s}}\nspec:\n  vars: {{a: {deep}}}\n"
    repo.write({"s.yaml": text})
    assert [str(e) for e in repo.load().errors] == [
        f"s.yaml:5:{12 + MAX_DEPTH - 2}: the YAML nests more than 64 levels deep, the limit"
    ]


def test_positions_are_never_built_deeper_than_the_limit() -> None:
    source = SourceMap("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (line, _), path = source.locate(0, ("a", 0, 0))
    assert (line, path) == (1, ["a", 0, 0])


# Errors per file, and locating them in time linear in the file.


def test_errors_past_fifty_are_counted_in_one_line(repo: Repo) -> None:
    keys = "".join(f"    {i}x: v\n" for i in range(120))
    repo.write({"t.yaml": task("t", CMD + "  env:\n" + keys)})
    errors = [str(e) for e in repo.load().errors]
    assert len(errors) == MAX_ERRORS_PER_FILE + 1
    assert errors[0].startswith("t.yaml:8:5: spec.env[\"0x\"]: '0x' is not a valid environment")
    assert errors[-1] == "t.yaml:57:5: … and 70 more errors in this file"


def test_every_invalid_document_keeps_an_error_past_the_cap(repo: Repo) -> None:
    keys = "".join(f"    {i}x: v\n" for i in range(60))
    docs = [task("t0", CMD + "  env:\n" + keys)]
    docs += [task(f"t{i}", "  retries: -1\n") for i in (1, 2)]
    repo.write({"t.yaml": "---\n".join(docs)})
    desired = repo.load()
    assert sorted(desired.invalid) == ["task/t0", "task/t1", "task/t2"]
    assert all(desired.invalid.values())


def test_thirty_thousand_invalid_keys_are_located_in_linear_time(repo: Repo) -> None:
    """Locating scanned a mapping's keys once per error: 10,000 keys took 51 s."""
    keys = "".join(f"    {i}x: v\n" for i in range(30_000))
    repo.write({"t.yaml": task("t", CMD + "  env:\n" + keys)})
    loader = DeclarationLoader()
    errors = [str(e) for e in loader.load(DirectorySource(repo.root)).errors]
    assert errors[-1] == "t.yaml:57:5: … and 29950 more errors in this file"


# Cycles.


def test_a_large_cycle_is_named_once(repo: Repo) -> None:
    n = 1_000
    repo.write({
        f"t/{i:04}.yaml": task(f"c{i}", CMD + f"  dependsOn: [task/c{(i + 1) % n}]\n")
        for i in range(n)
    })
    desired = repo.load()
    assert len(desired.invalid) == n
    named = [str(e) for e in desired.errors if "dependency cycle:" in e.message]
    head = " → ".join(f"task/c{i}" for i in range(8))
    assert named == [
        f"t/0000.yaml:7:15: spec.dependsOn[0]: dependency cycle: {head} → … (991 more) → "
        "task/c999 → task/c0"
    ]
    told = [e for e in desired.errors if "dependency cycle:" not in e.message]
    assert len(told) == n - 1
    assert {e.message for e in told} == {
        "part of a dependency cycle of 1000 entries, reported at t/0000.yaml:1"
    }
    assert max(len(str(e)) for e in desired.errors) < 300


def test_a_module_full_of_blank_lines_is_read_in_linear_time(repo: Repo) -> None:
    """Looking for local module calls scanned from every blank line to the end of the run:
    a megabyte of newlines in main.tf took over an hour."""
    repo.write({
        "s.yaml": f"{HEADER}kind: Stack\nmetadata: {{name: s}}\nspec:\n  path: st\n",
        "st/main.tf": "\n" * 1_000_000 + '  source = "../m"\n',
    })
    desired = repo.load()
    assert [str(e) for e in desired.errors] == [
        "s.yaml:5:9: spec.path: module source '../m' in st/main.tf: m does not exist"
    ]
