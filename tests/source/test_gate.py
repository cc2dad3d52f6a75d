"""Which commit is in force under `commits.verify`: the head when it is signed by an allowed
signer, else the newest verified commit on its first-parent chain, within a bound; each head is
verified and counted once."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from reconciler.metrics import Metrics
from reconciler.source.gitsource import GitSource
from reconciler.source.signatures import CommitGate, SignatureCheck, SignatureConfigError
from reconciler.source.sshsigs import SSHVerifier
from reconciler.source.verdicts import SignedCommit, Verdict
from reconciler.types import Revision
from tests.support.gitservers import GitDaemon, GitUser
from tests.support.signing import SSHKey, ssh_commit, ssh_key


class CountingVerifier(SSHVerifier):
    """The real SSH verifier, counting the commits it was asked about."""

    asked: list[str]

    def verify(self, commit: SignedCommit) -> Verdict:
        self.asked.append(commit.id)
        return super().verify(commit)


@pytest.fixture
def alice(tmp_path: Path) -> SSHKey:
    return ssh_key(tmp_path / "keys", "alice")


@pytest.fixture
def check(tmp_path: Path, alice: SSHKey) -> SignatureCheck:
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.signer_line("alice@example.com"))
    return SignatureCheck(mode="ssh", allowed_signers=signers, search_depth=3)


class Setup:
    def __init__(self, url: str, user: GitUser, state: Path, check: SignatureCheck) -> None:
        self.user = user
        self.source = GitSource(url, state)
        self.metrics = Metrics(process_metrics=False)
        assert check.allowed_signers is not None
        self.verifier = CountingVerifier(check.allowed_signers)
        self.verifier.asked = []
        self.gate = CommitGate(check, branch="main", status_branch="reconciler-status",
                               metrics=self.metrics, verifier=self.verifier)

    def head(self) -> Revision:
        self.user.push()
        return self.source.fetch()

    def metric(self, name: str, **labels: str) -> float | None:
        body, _ = self.metrics.render()
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and sample.labels.items() >= labels.items():
                    return float(sample.value)
        return None


@pytest.fixture
def setup(git_daemon: GitDaemon, bare_remote: Path, git_user: Callable[..., GitUser],
          tmp_path: Path, check: SignatureCheck) -> Iterator[Setup]:
    url = git_daemon.url("repo.git")
    made = Setup(url, git_user(url), tmp_path / "state", check)
    yield made
    made.gate.close()


def test_a_refused_head_leaves_the_newest_verified_first_parent_in_force(
        setup: Setup, alice: SSHKey) -> None:
    signed = ssh_commit(setup.user, alice, {"a.yaml": "a: 1\n"})
    setup.user.commit({"b.yaml": "b: 1\n"})
    unsigned = setup.user.commit({"c.yaml": "c: 1\n"})
    head = setup.head()

    decision = setup.gate.decide(head, setup.source.signed_commit)

    assert (decision.head, decision.verdict.result, decision.in_force) == (
        unsigned, "unsigned", signed)
    assert setup.metric("reconciler_commit_verification_total", result="unsigned") == 1
    assert setup.metric("reconciler_source_head_info", commit=unsigned,
                        verification="unsigned") == 1


def test_each_commit_is_verified_once_and_each_head_counted_once(
        setup: Setup, alice: SSHKey) -> None:
    ssh_commit(setup.user, alice, {"a.yaml": "a: 1\n"})
    setup.user.commit({"b.yaml": "b: 1\n"})
    head = setup.head()
    for _ in range(3):
        setup.gate.decide(head, setup.source.signed_commit)
    signed = ssh_commit(setup.user, alice, {"c.yaml": "c: 1\n"})
    decision = setup.gate.decide(setup.head(), setup.source.signed_commit)

    assert decision.in_force == signed
    # The unsigned head needs no verifier; its parent and the new head are asked once each.
    assert len(setup.verifier.asked) == 2
    assert setup.metric("reconciler_commit_verification_total", result="unsigned") == 1
    assert setup.metric("reconciler_commit_verification_total", result="verified") == 1
    assert setup.metric("reconciler_source_head_info", verification="unsigned") is None
    assert setup.metric("reconciler_source_head_info", commit=signed,
                        verification="verified") == 1


def test_nothing_is_in_force_when_no_verified_commit_is_within_reach(
        setup: Setup, alice: SSHKey) -> None:
    ssh_commit(setup.user, alice, {"a.yaml": "a: 1\n"})
    for n in range(4):  # search_depth is 3: the signed commit is the fourth below the head
        setup.user.commit({f"{n}.yaml": "x: 1\n"})
    head = setup.head()

    decision = setup.gate.decide(head, setup.source.signed_commit)

    assert decision.verdict.result == "unsigned"
    assert decision.in_force is None


def test_a_signed_merge_of_unsigned_commits_is_in_force(setup: Setup, alice: SSHKey) -> None:
    base = ssh_commit(setup.user, alice, {"a.yaml": "a: 1\n"})
    setup.user.git("checkout", "--quiet", "-b", "topic")
    setup.user.commit({"b.yaml": "b: 1\n"}, "Unsigned work")
    setup.user.git("checkout", "--quiet", "main")
    setup.user.git("-c", "gpg.format=ssh", "-c", f"user.signingkey={alice.private}", "merge",
                   "--quiet", "--no-ff", "-S", "-m", "Merge topic", "topic")
    merge = setup.head()

    decision = setup.gate.decide(merge, setup.source.signed_commit)

    assert merge != base
    assert decision.verdict.verified
    assert decision.in_force == merge


def test_verification_needs_its_trust_file_and_a_separate_status_branch(
        check: SignatureCheck) -> None:
    with pytest.raises(ValidationError, match="ssh needs allowedSigners"):
        SignatureCheck(mode="ssh")
    with pytest.raises(ValidationError, match="gpg needs keyring"):
        SignatureCheck(mode="gpg")
    with pytest.raises(ValidationError, match="Extra inputs"):
        SignatureCheck.model_validate({"verify": "ssh", "allowedSigners": "x", "allowed": 1})
    block = SignatureCheck.model_validate({"verify": "gpg", "keyring": "/etc/keys.asc"})
    assert (block.mode, block.keyring) == ("gpg", Path("/etc/keys.asc"))
    with pytest.raises(SignatureConfigError, match="needs a status branch other than 'main'"):
        CommitGate(check, branch="main", status_branch="main",
                   metrics=Metrics(process_metrics=False))


def test_a_running_gate_keeps_its_commit_when_history_is_replaced_by_unsigned_commits(
        setup: Setup, alice: SSHKey, check: SignatureCheck) -> None:
    signed = ssh_commit(setup.user, alice, {"a.yaml": "a: 1\n"})
    setup.gate.decide(setup.head(), setup.source.signed_commit)
    setup.user.checkout("rewritten", orphan=True)
    setup.user.commit({"x.yaml": "x: 1\n"}, "Unsigned history")
    setup.user.push(force=True)
    head = setup.source.fetch()

    kept = setup.gate.decide(head, setup.source.signed_commit)
    fresh = CommitGate(check, branch="main", status_branch="reconciler-status",
                       metrics=Metrics(process_metrics=False), verifier=setup.verifier)
    restarted = fresh.decide(head, setup.source.signed_commit)

    assert (kept.verdict.result, kept.in_force) == ("unsigned", signed)
    assert restarted.in_force is None


def test_a_verifier_that_cannot_run_refuses_for_now_and_is_asked_again(
        setup: Setup, alice: SSHKey, check: SignatureCheck, tmp_path: Path) -> None:
    signed = ssh_commit(setup.user, alice, {"a.yaml": "a: 1\n"})
    head = setup.head()
    program = tmp_path / "bin" / "ssh-keygen"  # not installed yet
    assert check.allowed_signers is not None
    verifier = SSHVerifier(check.allowed_signers, ssh_keygen=str(program))
    gate = CommitGate(check, branch="main", status_branch="reconciler-status",
                      metrics=setup.metrics, verifier=verifier)

    failed = [gate.decide(head, setup.source.signed_commit) for _ in range(2)]
    program.parent.mkdir()
    program.symlink_to(shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen")
    fixed = gate.decide(head, setup.source.signed_commit)
    verifier.close()

    assert [d.verdict.result for d in failed] == ["error", "error"]
    assert failed[0].verdict.reason.startswith("cannot verify the signature: ")
    assert failed[0].in_force is None
    assert (fixed.verdict.result, fixed.in_force) == ("verified", signed)
    assert setup.metric("reconciler_commit_verification_total", result="error") == 1
