"""A wrong policy file is refused with located lines, by `validate` and by the daemon (exit 2):
guardrails nobody meant are worse than none the operator knows about."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.policy.file import PolicyError, load_policy
from tests.policy.support import HEADER, task, write_repo
from tests.support.commands import cli

BAD: dict[str, tuple[str, str]] = {
    "cpu not a quantity": (
        "spec:\n  limits: {timeout: 6h, cpu: four}\n",
        ":4:30: spec.limits.cpu: 'four' is not a Kubernetes resource quantity"),
    "unknown field": (
        "spec:\n  serviceAcounts: [runner]\n",
        ":4:3: spec.serviceAcounts: unknown field; did you mean 'serviceAccounts'?"),
    "image prefix that cannot match": (
        "spec:\n  images: ['https://registry.example.io/']\n",
        ":4:12: spec.images[0]: 'https://registry.example.io/' is not an image prefix"),
    "repository prefix without a host": (
        "spec:\n  repositories: ['https:///org/']\n",
        ":4:18: spec.repositories[0]: 'https:///org/' is not a repository URL prefix"),
    "glob with other wildcards": (
        "spec:\n  secrets: ['app-?']\n",
        ":4:13: spec.secrets[0]: 'app-?' is not a name or a glob of names"),
    "ssh verification without its file": (
        "spec:\n  commits: {verify: ssh}\n",
        ":4:3: spec.commits: verify: ssh needs allowedSigners: FILE"),
    "a keyring that does not exist": (
        "spec:\n  commits: {verify: gpg, keyring: missing.gpg}\n",
        ":4:35: spec.commits.keyring: cannot read"),
    "timeout not a duration": (
        "spec:\n  limits:\n    timeout: 6 hours\n",
        ":5:14: spec.limits.timeout: '6 hours' is not a duration"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_policy_is_a_located_error(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body, expected = BAD[name]
    path = tmp_path / "policy.yaml"
    path.write_text(f"{HEADER}kind: Policy\n{body}")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert any(line.startswith(f"{path}{expected}") for line in refused.value.lines), (
        refused.value.lines)
    repo = write_repo(tmp_path / "repo", {"t.yaml": task("t")})
    code, out, err = cli(capsys, "validate", str(repo), "--policy", str(path))
    assert (code, out) == (2, "")
    assert f"{path}{expected}" in err


def test_not_a_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"{HEADER}kind: Defaults\nspec: {{}}\n")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert refused.value.lines == [f"{path}:2:7: kind: Input should be 'Policy', got 'Defaults'"]
    path.write_text("spec: [unclosed\n")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert refused.value.lines[0].startswith(f"{path}:2:1: invalid YAML")
    with pytest.raises(PolicyError) as refused:
        load_policy(tmp_path / "absent.yaml")
    assert refused.value.lines == [
        f"{tmp_path / 'absent.yaml'}: cannot read the policy file: No such file or directory"]


def test_verification_files_are_relative_to_the_policy(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "allowed_signers").write_text("ops@example.io ssh-ed25519 AAAA\n")
    path = tmp_path / "etc" / "policy.yaml"
    path.write_text(f"{HEADER}kind: Policy\nspec:\n  commits: "
                    "{verify: ssh, allowedSigners: allowed_signers}\n")
    commits = load_policy(path).spec.commits
    signers = tmp_path / "etc" / "allowed_signers"
    assert (commits.verify, commits.allowed_signers) == ("ssh", signers)


def test_run_exits_2_with_the_located_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"{HEADER}kind: Policy\nspec:\n  limits: {{cpu: lots}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "run", "--repo", str(tmp_path / "none.git"),
         "--state-dir", str(tmp_path / "state"), "--once", "--policy", str(path)],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert f"{path}:4:17: spec.limits.cpu: 'lots' is not a Kubernetes resource quantity" in (
        done.stderr)
    assert "Traceback" not in done.stderr
