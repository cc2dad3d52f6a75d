"""`reconciler validate --format gitlab`: a GitLab Code Quality report, checked against the
fields GitLab documents for one (tests/support/codequality.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.support.codequality import CODE_QUALITY_REPORT
from tests.support.commands import cli

TASK = "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n"


def _report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any], str]:
    code, out, err = cli(capsys, "validate", *argv, "--format", "gitlab")
    report = json.loads(out)
    jsonschema.Draft202012Validator(CODE_QUALITY_REPORT).validate(report)
    return code, report, err


@pytest.fixture
def declarations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`decl/` below the current folder, as a CI job's checkout has its declarations."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "decl").mkdir()
    return tmp_path / "decl"


def test_each_problem_is_an_issue_on_its_line(
    declarations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (declarations / "t.yaml").write_text(TASK + "  command: [x]\n  retries: once\n")
    (declarations / "broken file.yaml").write_text("apiVersion: reconciler.io/v1alpha1\nkind: [\n")

    code, report, err = _report(capsys, "decl")

    assert code == 1
    assert err == "2 problems (1 entry invalid); valid: 0 tasks and 0 stacks in 2 files\n"
    broken, retries = report
    assert {k: v for k, v in retries.items() if k != "fingerprint"} == {
        "description": "spec.retries: Input should be a valid integer, unable to parse string "
                       "as an integer, got 'once'",
        "check_name": "reconciler/declaration",
        "severity": "major",
        "location": {"path": "decl/t.yaml", "lines": {"begin": 6}},
    }
    assert broken["location"]["path"] == "decl/broken file.yaml"
    assert broken["fingerprint"] != retries["fingerprint"]


def test_a_clean_folder_is_an_empty_report(
    declarations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (declarations / "t.yaml").write_text(TASK + "  command: [x]\n")
    assert _report(capsys, "decl")[:2] == (0, [])


def test_fingerprints_follow_a_problem_that_moves_and_tell_alike_ones_apart(
    declarations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GitLab shows one issue per fingerprint, and calls an issue new when its fingerprint
    was not in the target branch's report."""
    # Two documents with the same problem, which names no entry: alike but for the line.
    bad = "apiVersion: reconciler.io/v1alpha1\nkind: Tsk\nmetadata: {name: a}\n"
    bad = f"{bad}---\n{bad}"
    (declarations / "t.yaml").write_text(bad)
    _, before, _ = _report(capsys, "decl")
    (declarations / "t.yaml").write_text("# a comment above moves every line\n" + bad)
    _, after, _ = _report(capsys, "decl")

    assert before[0]["description"] == before[1]["description"]
    assert len({issue["fingerprint"] for issue in before}) == len(before) == 2
    assert [i["fingerprint"] for i in after] == [i["fingerprint"] for i in before]
    assert [i["location"]["lines"]["begin"] for i in after] == [
        i["location"]["lines"]["begin"] + 1 for i in before]


def test_paths_are_from_the_current_folder_whatever_dir_is_given(
    declarations: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (declarations / "t.yaml").write_text(TASK + "  command: [x]\n  retries: once\n")
    assert _report(capsys, str(declarations))[1][0]["location"]["path"] == "decl/t.yaml"
    monkeypatch.chdir(declarations)
    assert _report(capsys, ".")[1][0]["location"]["path"] == "t.yaml"
