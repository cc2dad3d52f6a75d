"""What PR tooling reads from `validate` and `diff`: JSON reports that match the versioned
schemas committed in `schemas/`, and a Markdown diff that shows problems and dependents."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cmarkgfm
import jsonschema
import pytest

from reconciler.types import API_VERSION
from tests.declarations.repo import Repo
from tests.support.commands import cli

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample-repo"


def _check(name: str, document: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "schemas" / name).read_text())
    jsonschema.Draft202012Validator(schema).validate(document)


def test_validate_json_is_a_versioned_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "validate", str(SAMPLE), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert list(report)[:2] == ["apiVersion", "kind"]
    assert (report["apiVersion"], report["kind"]) == (API_VERSION, "ValidationReport")
    _check("validation-report.json", report)

    shutil.copytree(SAMPLE, tmp_path / "s")
    (tmp_path / "s" / "broken.yaml").write_text("kind: [\n")
    flags = tmp_path / "s" / "stacks" / "feature-flags.yaml"
    flags.write_text(flags.read_text().replace("prune: false", "prune: maybe"))
    code, out, _ = cli(capsys, "validate", str(tmp_path / "s"), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["invalid"]
    assert report["errors"]
    _check("validation-report.json", report)
    del report["apiVersion"]
    with pytest.raises(jsonschema.ValidationError):
        _check("validation-report.json", report)


def test_diff_json_is_a_versioned_report_with_dependents(
    history: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    base = history.git("rev-parse", "HEAD")
    check = history.root / "tasks" / "check-data.yaml"
    check.write_text(check.read_text().replace("2m", "3m"))
    history.remove("stacks/feature-flags.yaml")
    history.write({"broken.yaml": "kind: [\n", "tasks/new.yaml": (
        "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: new}\n"
        "spec:\n  command: [x]\n  retries: -1\n")})
    history.commit("changes")

    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base,
                       "--format", "json")
    assert code == 1
    report = json.loads(out)
    _check("declaration-diff.json", report)
    assert (report["apiVersion"], report["kind"]) == (API_VERSION, "DeclarationDiff")
    assert report["summary"] == {"added": 0, "changed": 1, "removed": 1, "invalid": 1}
    assert [(d["id"], d["after"]) for d in report["dependents"]] == [
        ("task/build-report", ["task/check-data"]),
        ("task/publish-report", ["task/build-report"]),
    ]
    assert report["dependents"][0]["location"]["path"] == "tasks/build-report.yaml"


def test_markdown_shows_a_syntax_error_instead_of_an_empty_table(
    history: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    base = history.git("rev-parse", "HEAD")
    history.write({"tasks/oops.yaml": "apiVersion: reconciler.io/v1alpha1\nkind: [\n"})
    history.commit("a syntax error")

    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base,
                       "--format", "markdown")

    assert code == 1
    assert out.startswith("### reconciler: ❌ 1 problem in the head commit\n")
    assert "0 invalid" not in out
    assert "| Entry |" not in out
    assert "\ntasks/oops.yaml:3:1: invalid YAML" in out
    html = cmarkgfm.github_flavored_markdown_to_html(out)  # as GitHub renders the comment
    assert "<table>" not in html
    assert "<pre><code>tasks/oops.yaml:3:1: invalid YAML" in html


def test_markdown_says_which_dependents_run_again(
    history: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    base = history.git("rev-parse", "HEAD")
    check = history.root / "tasks" / "check-data.yaml"
    check.write_text(check.read_text().replace("2m", "3m"))
    history.commit("longer checks")

    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base,
                       "--format", "markdown")

    assert code == 0
    assert out.startswith(
        "### reconciler: 0 added, 1 changed, 0 removed, 0 invalid; 2 dependents run again\n")
    assert ("| Entry | After |\n|---|---|\n"
            "| `task/build-report` | `task/check-data` |\n"
            "| `task/publish-report` | `task/build-report` |\n") in out
    html = cmarkgfm.github_flavored_markdown_to_html(out)
    assert html.count("<table>") == 3  # the entries, the dependents, check-data's fields
    assert "<td><code>task/publish-report</code></td>" in html


def test_a_change_that_does_not_run_again_has_no_dependents(
    history: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A label is not part of the spec: check-data does not run, so neither do its users."""
    base = history.git("rev-parse", "HEAD")
    check = history.root / "tasks" / "check-data.yaml"
    text = check.read_text()
    assert "  labels:\n    team: data\n" in text
    check.write_text(text.replace("    team: data\n", "    team: analytics\n"))
    history.commit("a label")
    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base,
                       "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["changed"][0]["rerun"] is False
    assert report["dependents"] == []
