"""`reconciler validate`, `reconciler diff` and `reconciler schema` as users run them, on the
sample repository and on real commits made with the git CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from reconciler.declarations.schema import render, schemas
from tests.declarations.repo import Repo
from tests.support.commands import cli

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample-repo"




def test_sample_repo_is_valid() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", str(SAMPLE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr == "valid: 4 tasks and 2 stacks in 7 files\n"


def test_one_broken_field_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "sample"
    shutil.copytree(SAMPLE, copy)
    target = copy / "tasks" / "build-report.yaml"
    lines = target.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("  retries: 1"))
    lines[number - 1] = "  retries: once\n"
    target.write_text("".join(lines))

    code, out, _ = cli(capsys, "validate", str(copy))
    assert code == 1
    assert out == (
        f"{copy}/tasks/build-report.yaml:{number}:12: spec.retries: Input should be a valid "
        "integer, unable to parse string as an integer, got 'once'\n"
    )
    code, out, _ = cli(capsys, "validate", str(copy), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    assert report["summary"] == {"files": 7, "tasks": 3, "stacks": 2, "invalid": 1, "errors": 1}
    assert report["errors"] == [{
        "path": "tasks/build-report.yaml", "line": number, "column": 12,
        "field": "spec.retries",
        "message": "Input should be a valid integer, unable to parse string as an integer, "
                   "got 'once'",
        "entry": "task/build-report",
    }]
    assert report["invalid"] == [{"id": "task/build-report", "errors": report["errors"]}]


def test_github_annotations_point_at_the_offending_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--format github` in a workflow: each problem is an `::error` command GitHub shows on
    the line, with `%`, newlines, `:` and `,` escaped as the runner reads them."""
    (tmp_path / "t.yaml").write_text(
        "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n"
        "  command: [x]\n  timeout: '50%, or: more'\n")
    (tmp_path / "broken.yaml").write_text("apiVersion: reconciler.io/v1alpha1\nkind: [\n")
    monkeypatch.chdir(tmp_path)

    code, out, _ = cli(capsys, "validate", ".", "--format", "github")

    assert code == 1
    lines = out.splitlines()
    assert lines[1] == (
        "::error file=t.yaml,line=6,col=12,title=spec.timeout::'50%25, or: more' is not a "
        "duration: use whole numbers with units d, h, m, s, in that order, e.g. 30s, 5m, 1h30m")
    assert lines[0].startswith("::error file=broken.yaml,line=3,col=1,title=reconciler validate::")
    assert len(lines) == 2


def test_validate_refuses_a_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "validate", str(tmp_path / "nowhere"))
    assert (code, out) == (2, "")
    assert "is not a folder" in err


def test_diff_shows_exactly_the_changed_entry(
    history: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    base = history.git("rev-parse", "HEAD")
    path = history.root / "tasks" / "build-report.yaml"
    path.write_text(path.read_text().replace("REPORT_TITLE: Weekly sales",
                                             "REPORT_TITLE: Monthly sales"))
    head = history.commit("monthly report")

    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base)
    assert code == 0
    assert out == (
        f"{base[:12]}..{head[:12]}: 0 added, 1 changed, 0 removed, 0 invalid\n"
        "~ task/build-report  tasks/build-report.yaml:6\n"
        '    spec.env.REPORT_TITLE: "Weekly sales" → "Monthly sales"\n'
    )
    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base,
                       "--head", head, "--format", "json")
    data = json.loads(out)
    assert data["summary"] == {"added": 0, "changed": 1, "removed": 0, "invalid": 0}
    [entry] = data["changed"]
    assert entry["id"] == "task/build-report"
    assert entry["rerun"] is True
    assert entry["fields"] == [
        {"path": "spec.env.REPORT_TITLE", "base": "Weekly sales", "head": "Monthly sales"}]
    assert entry["baseHash"] != entry["headHash"]


def test_diff_markdown_for_a_pull_request(
    history: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    base = history.git("rev-parse", "HEAD")
    main_tf = history.root / "stacks" / "network" / "main.tf"
    main_tf.write_text(main_tf.read_text() + "\n# tuned\n")
    history.remove("stacks/feature-flags.yaml")
    (history.root / "tasks" / "check-data.yaml").write_text(
        (history.root / "tasks" / "check-data.yaml").read_text().replace("2m", "2 min"))
    history.write({"tasks/hello.yaml": (
        "apiVersion: reconciler.io/v1alpha1\nkind: Task\nmetadata: {name: hello}\n"
        "spec:\n  command: [python3, -c, 'print(1)']\n  env: {TOKEN_NAME: report-creds}\n"
        "  secretEnv: {TOKEN: {secret: report-creds, key: token}}\n")})
    history.commit("several changes")

    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base,
                       "--format", "markdown")
    assert code == 1  # the head commit has a problem
    assert out.startswith("### reconciler: 1 added, 1 changed, 1 removed, 1 invalid\n")
    assert "| `task/hello` | 🆕 added | new: runs once merged |" in out
    assert "| `stack/network` | ✏️ changed | 1 field changed; runs again |" in out
    assert ("| `stack/feature-flags` | 🗑️ removed | prune is off: its resources are left in "
            "place |") in out
    assert "| `task/check-data` | ❌ invalid | 1 problem;" in out
    assert "- `stacks/network/main.tf`" in out
    assert "tasks/check-data.yaml:" in out
    assert "'2 min' is not a duration" in out
    # build-report and publish-report depend on check-data but did not change.
    assert "task/build-report" not in out


def test_diff_warns_before_a_pruning_removal(
    history: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = history.root / "stacks" / "feature-flags.yaml"
    flags.write_text(flags.read_text().replace("prune: false", "prune: true"))
    base = history.commit("prune on")
    history.remove("stacks/feature-flags.yaml")
    history.commit("retire feature flags")
    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base)
    assert code == 0
    assert "- stack/feature-flags  stacks/feature-flags.yaml:6\n" in out
    assert "    prune is on: merging destroys this stack's resources\n" in out


def test_diff_of_an_unknown_revision(history: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "diff", "--repo", str(history.root), "--base", "no-such-branch")
    assert code == 2
    assert "'no-such-branch' is not a commit" in err


def test_committed_schemas_are_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "schema", "--out", str(tmp_path))
    assert code == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in (ROOT / "schemas").iterdir())
    committed = ROOT / "schemas"
    stale = [n for n in written if (tmp_path / n).read_bytes() != (committed / n).read_bytes()]
    assert not stale, f"schemas/ is out of date; run `make schemas` ({stale})"
    assert out.splitlines() == [str(tmp_path / n) for n in [*schemas(), "policy.json"]]
    for schema in schemas().values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_sample_files_carry_a_schema_modeline_and_match_it() -> None:
    yaml = YAML(typ="safe")
    files = sorted(SAMPLE.rglob("*.yaml"))
    assert len(files) == 7
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        schema_path = (path.parent / first.split("=", 1)[1]).resolve()
        schema = json.loads(schema_path.read_text())
        assert render(schema) == schema_path.read_text()
        for document in yaml.load_all(path):
            jsonschema.Draft202012Validator(schema).validate(document)
            jsonschema.Draft202012Validator(schemas()["reconciler.json"]).validate(document)
    typo = {"apiVersion": "reconciler.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "t"}, "spec": {"command": ["true"], "comand": ["x"]}}
    assert not jsonschema.Draft202012Validator(schemas()["reconciler.json"]).is_valid(typo)


def test_diff_lists_fifty_invalid_entries_then_counts_the_rest(
    history: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    base = history.git("rev-parse", "HEAD")
    history.write({
        f"broken/t{i}.yaml": "apiVersion: reconciler.io/v1alpha1\nkind: Task\n"
        f"metadata: {{name: broken-{i}}}\nspec: {{retries: -1}}\n"
        for i in range(60)
    })
    history.commit("sixty broken tasks")
    for form in ("text", "markdown"):
        code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base,
                           "--format", form)
        assert code == 1
        assert "60 invalid" in out
        assert "… and 10 more invalid entries (`reconciler validate` lists every problem)" in out
    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base)
    assert sum(line.startswith("! task/broken-") for line in out.splitlines()) == 50
    code, out, _ = cli(capsys, "diff", "--repo", str(history.root), "--base", base,
                       "--format", "json")
    assert len(json.loads(out)["invalid"]) == 60


def test_the_readme_states_the_bounds_the_loader_enforces() -> None:
    from reconciler.declarations import limits

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    stated = [
        f"{limits.MAX_FILE_BYTES >> 20} MiB, at most {limits.MAX_DOCUMENTS:,} documents",
        f"{limits.MAX_DEPTH} levels",
        f"| {limits.MAX_NODES:,} |",
        f"{limits.MAX_DURATION_SECONDS // 86400} days",
        f"10^{len(str(limits.MAX_QUANTITY)) - 1}, {limits.MAX_QUANTITY_LENGTH} characters",
        f"{limits.MAX_PATH_BYTES:,} bytes, {limits.MAX_PATH_COMPONENT_BYTES} per",
        f"| {limits.MAX_ERRORS_PER_FILE}, then how many more |",
    ]
    assert [s for s in stated if s not in text] == []
