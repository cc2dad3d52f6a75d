"""`reconciler run --policy` with `commits.verify: ssh`, as an operator starts it: a signed
head is reconciled; an unsigned head pushed after it is refused (its Task never runs) and the
refusal is on the status branch; a bad trust file stops the start with one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.cli.test_run_command import one_line, reconciler
from tests.e2e.harness import task_yaml
from tests.support.gitservers import GitDaemon, GitUser, git, make_bare_remote
from tests.support.signing import ssh_commit, ssh_key

PY = "python3"


def _marking(name: str, marks: Path) -> str:
    return task_yaml(name, [PY, "-c", f"open({str(marks / name)!r}, 'a').write('ran\\n')"])


def test_run_reconciles_a_signed_head_and_refuses_an_unsigned_one(
        git_root: Path, git_user: Callable[..., GitUser], tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    alice = ssh_key(tmp_path / "keys", "alice")
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.signer_line("alice@example.com", 'namespaces="git"'))
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: reconciler.io/v1alpha1\nkind: Policy\nspec:\n"
                      f"  commits: {{verify: ssh, allowedSigners: {signers}}}\n")
    bare = make_bare_remote(git_root / "signed.git", {"README.md": "declarations\n"})
    with GitDaemon(git_root) as server:
        url = server.url("signed.git")
        user = git_user(url)
        ssh_commit(user, alice, {"signed.yaml": _marking("signed", marks)})
        user.push()
        state = tmp_path / "state"

        def once() -> tuple[int, str]:
            done = reconciler("run", "--once", "--repo", url, "--state-dir", str(state),
                              "--policy", str(policy), "--listen", "")
            return done.returncode, done.stderr

        code, stderr = once()
        assert code == 0, stderr
        assert (marks / "signed").read_text() == "ran\n"

        unsigned = user.commit({"unsigned.yaml": _marking("unsigned", marks)}, "Not signed")
        user.push()
        code, _ = once()
        assert code == 1
        assert not (marks / "unsigned").exists()
        assert (marks / "signed").read_text() == "ran\n"  # still in force, not run again
        readme = git("--git-dir", bare, "show", "reconciler-status:status/README.md")
        assert f"Refused commit `{unsigned}`" in readme


def test_a_broken_allowed_signers_file_stops_the_start(tmp_path: Path, git_root: Path) -> None:
    signers = tmp_path / "allowed_signers"
    signers.write_text("alice@example.com not-a-key-type AAAA\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: reconciler.io/v1alpha1\nkind: Policy\nspec:\n"
                      f"  commits: {{verify: ssh, allowedSigners: {signers}}}\n")
    bare = make_bare_remote(git_root / "any.git", {"README.md": "x\n"})
    done = reconciler("run", "--once", "--repo", f"file://{bare}", "--state-dir",
                      str(tmp_path / "state"), "--policy", str(policy))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith(f"reconciler: --policy {policy}: spec.commits: {signers}:1:")
    assert "allowedSigners" in line
