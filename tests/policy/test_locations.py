"""Where a denial is reported: the entry's own line when it writes the value, the Defaults'
line when the value comes from there, once per line however many entries it denies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.support import HEADER, defaults, policy, task, where, write_repo
from tests.support.commands import cli


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, files: dict[str, str],
         *rules: str) -> tuple[int, list[str]]:
    repo = write_repo(tmp_path / "repo", files)
    (tmp_path / "policy.yaml").write_text(policy(*rules))
    code, out, _ = cli(capsys, "validate", str(repo), "--policy", str(tmp_path / "policy.yaml"),
                       "--executor", "kubernetes")
    prefix = f"{repo}/"
    return code, [line.removeprefix(prefix) for line in out.splitlines()]


def test_a_value_from_defaults_is_one_line_at_the_defaults(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    files = {"reconciler.yaml": defaults("namespace: kube-system"),
             **{f"t{i}.yaml": task(f"t{i}") for i in range(3)}}
    code, lines = _run(capsys, tmp_path, files)
    assert code == 1
    assert lines == ["reconciler.yaml:6:14: spec.namespace: denied by policy: namespace "
                     "kube-system is not allowed (allowed: default)"]


def test_the_entry_that_writes_the_defaults_value_itself_is_reported_at_its_own_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mine = task("mine", "serviceAccountName: admin")
    files = {"reconciler.yaml": defaults("serviceAccountName: admin"),
             "mine.yaml": mine, "other.yaml": task("other")}
    _, lines = _run(capsys, tmp_path, files)
    line, column = where(mine, "serviceAccountName", "admin")
    reason = "spec.serviceAccountName: denied by policy: service account admin is not allowed"
    assert lines == [f"mine.yaml:{line}:{column}: {reason} (the policy allows none)",
                     f"reconciler.yaml:6:23: {reason} (the policy allows none)"]


def test_a_denied_document_among_others_in_one_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = ("# several tasks\n" + task("first") + "---\n# the second one\n\n"
            + task("second", "secretEnv:", "  X: {secret: reconciler-credentials, key: k}")
            + "---\nnot: ours\n---\n" + task("third", "serviceAccountName: admin"))
    _, lines = _run(capsys, tmp_path, {"many.yaml": text}, 'secrets: ["*"]')
    second = where(text, "X: {secret", "reconciler-credentials")
    third = where(text, "serviceAccountName", "admin")
    assert [x.split(": ")[0] for x in lines] == [
        f"many.yaml:{second[0]}:{second[1]}", f"many.yaml:{third[0]}:{third[1]}"]


def test_denials_join_the_other_problems_of_their_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = f"{HEADER}kind: Task\nmetadata:\n  name: broken\nspec:\n  comand: [x]\n"
    files = {"a.yaml": task("a", "serviceAccountName: admin"), "b.yaml": broken}
    code, lines = _run(capsys, tmp_path, files)
    assert code == 1
    assert [x.split(":")[0] for x in lines] == ["a.yaml", "b.yaml", "b.yaml"]
