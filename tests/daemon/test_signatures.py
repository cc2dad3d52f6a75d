"""`commits.verify: ssh`: the daemon reconciles only heads signed by an allowed signer; an
unsigned head leaves the last verified commit in force and is reported in status/README.md,
status/errors.yaml, the metrics and the log (once), across restarts too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from reconciler.daemon import Daemon
from reconciler.declarations.loader import DeclarationLoader
from reconciler.executors.local.executor import LocalExecutor
from reconciler.source.gitsource import GitSource
from reconciler.source.signatures import SignatureCheck
from tests.daemon.conftest import World, task
from tests.e2e.harness import status_file
from tests.support.gitservers import git, git_env
from tests.support.signing import GPGHome, SSHKey, gpg_commit, ssh_commit, ssh_key


def verifying(w: World, check: SignatureCheck) -> Daemon:
    """Replace the world's daemon by one with the same remote and state dir that verifies."""
    w.daemon.executor.close()
    source = GitSource(w.url, w.state, status_branch=w.status_branch)
    executor = LocalExecutor(state_dir=w.state, workspace=source, max_parallel=4,
                             clock=w.clock, secrets_dir=w.state.parent / "secrets")
    w.daemon = Daemon(source=source, loader=DeclarationLoader(), executor=executor,
                      metrics=w.metrics, clock=w.clock, signatures=check)
    return w.daemon


def marking(name: str, marks: Path) -> str:
    """A Task that leaves a line in `marks/<name>` each time it runs."""
    return task(name, f"open({str(marks / name)!r}, 'a').write('ran\\n')")


def runs(marks: Path, name: str) -> int:
    path = marks / name
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).rstrip("\n")), level="WARNING",
                      format="{message}")
    yield lines
    logger.remove(sink)


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """Where the Tasks of `marking` leave their lines."""
    path = tmp_path / "marks"
    path.mkdir()
    return path


def signed_start(world: Callable[..., World], key: SSHKey, check: SignatureCheck,
                 marks: Path) -> tuple[World, str]:
    """A verifying daemon that reconciled a head signed with `key` adding task/a."""
    w = world({"README.md": "# declarations\n"})
    verifying(w, check)
    signed = ssh_commit(w.user, key, {"a.yaml": marking("a", marks)})
    w.user.push()
    w.settle()
    return w, signed


@pytest.fixture
def alice(tmp_path: Path) -> SSHKey:
    return ssh_key(tmp_path / "keys", "alice")


@pytest.fixture
def ssh_check(tmp_path: Path, alice: SSHKey) -> SignatureCheck:
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.signer_line("*@example.com", 'namespaces="git"'))
    return SignatureCheck(mode="ssh", allowed_signers=signers)


def readme(w: World) -> str:
    return git("--git-dir", w.bare, "show", f"{w.status_branch}:status/README.md")


def errors_file(w: World) -> dict[str, Any]:
    data = status_file(w.bare, "status/errors.yaml", branch=w.status_branch)
    assert data is not None
    return data


def test_only_signed_heads_run_and_an_unsigned_one_is_refused_and_reported(
        world: Callable[..., World], marks: Path, alice: SSHKey, ssh_check: SignatureCheck,
        warnings: list[str]) -> None:
    w, signed = signed_start(world, alice, ssh_check, marks)
    assert runs(marks, "a") == 1
    assert w.status("task/a")["phase"] == "Succeeded"

    # An unsigned head that removes a and adds b: nothing of it runs, nothing is removed.
    unsigned = w.push({"a.yaml": None, "b.yaml": marking("b", marks)}, "Unsigned change")
    for _ in range(3):
        w.settle()
    assert runs(marks, "b") == 0
    assert status_file(w.bare, "status/tasks/b.yaml", branch=w.status_branch) is None
    assert w.status("task/a")["phase"] == "Succeeded"
    assert w.daemon.revision == signed

    text = readme(w)
    assert (f"**Refused commit `{unsigned}`** (unsigned): the commit is not signed; commit "
            f"`{signed}` stays in force") in text
    assert f"Declarations from branch `main` at commit `{signed}`" in text
    errors = errors_file(w)
    assert errors["refusedCommit"] == {
        "commit": unsigned, "branch": "main", "result": "unsigned",
        "reason": "the commit is not signed", "inForce": signed,
        "text": f"commit {unsigned} on main refused (unsigned): the commit is not signed; "
                f"commit {signed} stays in force"}
    assert w.metric("reconciler_commit_verification_total", result="unsigned") == 1
    assert w.metric("reconciler_commit_verification_total", result="verified") == 1
    assert w.metric("reconciler_source_head_info", branch="main", commit=unsigned,
                    verification="unsigned") == 1
    assert w.metric("reconciler_source_revision_info", commit=signed) == 1
    shown = subprocess.run([sys.executable, "-m", "reconciler", "status", "--repo", str(w.bare)],
                           capture_output=True, text=True, timeout=120, check=False,
                           env=git_env())
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.splitlines()[-1] == f"refused: {errors['refusedCommit']['text']}"
    refusals = [line for line in warnings if "refused" in line]
    assert refusals == [f"commit {unsigned[:12]} on main refused (unsigned): the commit is not "
                        f"signed; commit {signed[:12]} stays in force"]

    # A signed head after it is reconciled normally: b runs, a is gone from the declarations.
    fixed = ssh_commit(w.user, alice, {"c.yaml": marking("c", marks)}, "Signed again")
    w.user.push()
    w.settle()
    assert (runs(marks, "a"), runs(marks, "b"), runs(marks, "c")) == (1, 1, 1)
    assert w.daemon.revision == fixed
    assert "Refused commit" not in readme(w)
    assert "refusedCommit" not in errors_file(w)
    assert w.metric("reconciler_source_head_info", commit=unsigned) is None
    assert w.metric("reconciler_source_head_info", commit=fixed, verification="verified") == 1
    assert w.metric("reconciler_commit_verification_total", result="verified") == 2


def test_a_restart_finds_the_commit_in_force_again_and_runs_nothing_new(
        world: Callable[..., World], marks: Path, alice: SSHKey,
        ssh_check: SignatureCheck) -> None:
    w, signed = signed_start(world, alice, ssh_check, marks)
    w.push({"b.yaml": marking("b", marks)}, "Unsigned one")
    unsigned = w.push({"c.yaml": marking("c", marks)}, "Unsigned two")
    w.settle()

    restarted = verifying(w, ssh_check)
    w.settle()

    assert restarted.revision == signed
    assert (runs(marks, "a"), runs(marks, "b"), runs(marks, "c")) == (1, 0, 0)
    assert f"**Refused commit `{unsigned}`**" in readme(w)


def test_with_no_verified_commit_nothing_runs_and_the_refusal_is_still_reported(
        world: Callable[..., World], marks: Path, ssh_check: SignatureCheck) -> None:
    w = world({"a.yaml": marking("a", marks)})  # the seed commit is not signed
    daemon = verifying(w, ssh_check)
    w.settle()

    assert runs(marks, "a") == 0
    assert daemon.revision is None
    assert "no verified commit is in force, so nothing is reconciled" in readme(w)
    assert errors_file(w)["refusedCommit"]["inForce"] is None
    assert daemon.exit_code() == 1


def test_gpg_signed_heads_run_and_an_unsigned_one_does_not(
        world: Callable[..., World], tmp_path: Path, marks: Path) -> None:
    home = GPGHome("Alice Example", "alice@example.com")
    try:
        check = SignatureCheck(mode="gpg", keyring=home.export(tmp_path / "keyring.asc"))
        w = world({"README.md": "# declarations\n"})
        verifying(w, check)
        signed = gpg_commit(w.user, home, {"a.yaml": marking("a", marks)})
        w.user.push()
        w.settle()
        unsigned = w.push({"b.yaml": marking("b", marks)}, "Unsigned change")
        w.settle()
    finally:
        home.close()

    assert (runs(marks, "a"), runs(marks, "b")) == (1, 0)
    assert w.daemon.revision == signed
    assert errors_file(w)["refusedCommit"]["commit"] == unsigned
