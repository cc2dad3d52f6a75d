"""The policy over successive loads of one repository, as the daemon loads commits: results
follow every change, whichever entries the loader built again."""

from __future__ import annotations

from pathlib import Path

from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.policy.apply import PolicyCheck, PolicyLoader
from reconciler.policy.model import DEFAULT_POLICY
from reconciler.policy.rules import DaemonIdentity
from tests.policy.support import defaults, task, write_repo


def test_denials_follow_each_load(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {
        "a.yaml": task("a", "serviceAccountName: admin"), "b.yaml": task("b")})
    loader = PolicyLoader(DeclarationLoader(), PolicyCheck(DEFAULT_POLICY, DaemonIdentity()))

    def load() -> tuple[list[str], list[str], list[str]]:
        desired = loader.load(DirectorySource(root))
        return sorted(desired.entries), sorted(desired.invalid), [str(e) for e in desired.errors]

    first = load()
    assert first[:2] == (["task/b"], ["task/a"])
    assert first[2] == ["a.yaml:8:23: spec.serviceAccountName: denied by policy: service "
                        "account admin is not allowed (the policy allows none)"]
    (root / "b.yaml").write_text(task("b", "args: [again]"))
    assert load() == first  # a was not built again: its denial is kept
    (root / "a.yaml").write_text(task("a"))
    assert load() == (["task/a", "task/b"], [], [])
    (root / "a.yaml").write_text(task("a", "serviceAccountName: admin"))
    assert load() == first
    (root / "reconciler.yaml").write_text(defaults("serviceAccountName: admin"))
    entries, invalid, errors = load()
    assert (entries, invalid) == ([], ["task/a", "task/b"])
    assert [e.split(":")[0] for e in errors] == ["a.yaml", "reconciler.yaml"]
