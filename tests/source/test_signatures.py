"""Commit signatures checked against real signatures: commits signed by the git CLI with SSH keys
from ssh-keygen and with GnuPG keys, read back through the Git source, verified by
`ssh-keygen -Y verify` and by gpg in a private home."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.source.gitsource import GitSource
from reconciler.source.gpgsigs import GPGVerifier
from reconciler.source.sshsigs import SSHVerifier, key_fingerprint, parse_signature
from reconciler.source.verdicts import SignatureConfigError, SignedCommit, Verdict
from tests.support.gitservers import GitDaemon, GitUser
from tests.support.signing import (
    GPGHome,
    SSHKey,
    commit_object,
    gpg_commit,
    split_signature,
    ssh_certificate,
    ssh_commit,
    ssh_key,
    ssh_sign,
    tampered,
    write_commit,
)

ALICE = "alice@example.com"  # the git_user fixture's committer address


@dataclass
class Repo:
    user: GitUser
    source: GitSource

    def read(self, commit: str) -> SignedCommit:
        """Push the user's HEAD and read `commit` back the way the daemon does."""
        self.user.push(force=True)
        self.source.fetch()
        return self.source.signed_commit(commit)  # type: ignore[arg-type]


@pytest.fixture
def repo(git_daemon: GitDaemon, bare_remote: Path, git_user: Callable[..., GitUser],
         tmp_path: Path) -> Repo:
    url = git_daemon.url("repo.git")
    return Repo(git_user(url), GitSource(url, tmp_path / "state"))


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, SSHKey]:
    return {name: ssh_key(tmp_path / "keys", name) for name in ("alice", "mallory")}


def ssh_verifier(tmp_path: Path, *lines: str) -> Iterator[SSHVerifier]:
    """One verifier over `lines`, closed when the loop (or fixture) using it ends."""
    path = tmp_path / "allowed_signers"
    path.write_text("# who may sign the declarations\n" + "".join(lines))
    verifier = SSHVerifier(path)
    try:
        yield verifier
    finally:
        verifier.close()


@pytest.fixture
def alice_only(tmp_path: Path, keys: dict[str, SSHKey]) -> Iterator[SSHVerifier]:
    yield from ssh_verifier(tmp_path, keys["alice"].signer_line(ALICE, 'namespaces="git"'))


def check(verifier: SSHVerifier | GPGVerifier, repo: Repo, commit: str) -> Verdict:
    return verifier.verify(repo.read(commit))


# -- SSH -------------------------------------------------------------------------------------


def test_a_commit_signed_by_an_allowed_ssh_key_is_verified(
        repo: Repo, keys: dict[str, SSHKey], alice_only: SSHVerifier) -> None:
    commit = ssh_commit(repo.user, keys["alice"], {"tasks/a.yaml": "a: 1\n"})

    verdict = check(alice_only, repo, commit)

    assert verdict.verified, verdict
    assert verdict.signer == ALICE
    fingerprint = key_fingerprint(parse_signature(repo.read(commit).signature or b"")[0])
    assert verdict.reason == f"signed by {ALICE} with SSH key {fingerprint}"


def test_an_unsigned_commit_is_refused(repo: Repo, alice_only: SSHVerifier) -> None:
    commit = repo.user.commit({"tasks/a.yaml": "a: 1\n"})

    assert check(alice_only, repo, commit).result == "unsigned"


def test_a_key_missing_from_the_allowed_signers_is_untrusted(
        repo: Repo, keys: dict[str, SSHKey], alice_only: SSHVerifier, tmp_path: Path) -> None:
    commit = ssh_commit(repo.user, keys["mallory"], {"tasks/a.yaml": "a: 1\n"})

    verdict = check(alice_only, repo, commit)

    assert verdict.result == "untrusted"
    assert "is not in" in verdict.reason
    assert str(tmp_path / "allowed_signers") in verdict.reason


def test_a_commit_changed_after_signing_is_invalid(
        repo: Repo, keys: dict[str, SSHKey], alice_only: SSHVerifier) -> None:
    ssh_commit(repo.user, keys["alice"], {"tasks/a.yaml": "a: 1\n"})
    forged = tampered(repo.user)

    verdict = check(alice_only, repo, forged)

    assert verdict.result == "invalid"
    assert "changed after signing" in verdict.reason


def test_a_signature_for_another_namespace_is_invalid(
        repo: Repo, keys: dict[str, SSHKey], alice_only: SSHVerifier) -> None:
    repo.user.commit({"tasks/a.yaml": "a: 1\n"})
    payload, _ = split_signature(commit_object(repo.user))
    forged = write_commit(repo.user, payload, ssh_sign(keys["alice"], payload, "file"))

    verdict = check(alice_only, repo, forged)

    assert verdict.result == "invalid"
    assert "namespace 'file', not 'git'" in verdict.reason


def test_an_allowed_key_signs_whoever_commits_as_git_verify_commit_accepts(
        repo: Repo, keys: dict[str, SSHKey], tmp_path: Path) -> None:
    """An allowed signer is a key of the file, whoever the committer is (a CI bot's key, a
    forge's merge key): the signer named is the principal the key is listed for."""
    commit = ssh_commit(repo.user, keys["alice"], {"tasks/a.yaml": "a: 1\n"})

    for verifier in ssh_verifier(tmp_path, keys["alice"].signer_line("bob@example.com")):
        verdict = check(verifier, repo, commit)
        assert verdict.verified
        assert verdict.signer == "bob@example.com"
    for verifier in ssh_verifier(tmp_path, keys["alice"].signer_line("*@example.com")):
        verdict = check(verifier, repo, commit)
        assert verdict.verified
        assert verdict.signer == ALICE
    for verifier in ssh_verifier(tmp_path, keys["mallory"].signer_line("bob@example.com")):
        assert check(verifier, repo, commit).result == "untrusted"  # alice's key is not listed


@pytest.mark.parametrize(("options", "why"), [
    ('valid-before="20200101"', "key has expired"),
    ('valid-after="29990101"', "not yet valid"),
    ('namespaces="file"', 'not permitted for use in signature namespace "git"'),
])
def test_the_options_of_a_key_limit_what_it_verifies(
        repo: Repo, keys: dict[str, SSHKey], tmp_path: Path, options: str, why: str) -> None:
    commit = ssh_commit(repo.user, keys["alice"], {"tasks/a.yaml": "a: 1\n"})

    for verifier in ssh_verifier(tmp_path, keys["alice"].signer_line(ALICE, options)):
        verdict = check(verifier, repo, commit)
        assert verdict.result == "untrusted", verdict
        assert f"{tmp_path / 'allowed_signers'}:2: " in verdict.reason
        assert why in verdict.reason


def test_a_certificate_from_an_allowed_authority_signs_for_its_own_principals(
        repo: Repo, tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    ca, key = ssh_key(folder, "ca"), ssh_key(folder, "laptop")
    authority = ca.signer_line("*@example.com", 'cert-authority,namespaces="git"')
    alices = ssh_certificate(ca, key, ALICE)
    good = ssh_commit(repo.user, alices, {"tasks/a.yaml": "a: 1\n"})
    for verifier in ssh_verifier(tmp_path, authority):
        assert check(verifier, repo, good).verified

    outside = ssh_certificate(ca, key, "mallory@elsewhere.example.org")
    other = ssh_commit(repo.user, outside, {"tasks/a.yaml": "a: 2\n"})
    for verifier in ssh_verifier(tmp_path, authority):
        verdict = check(verifier, repo, other)
        assert verdict.result == "untrusted"
        assert "name is not a listed principal" in verdict.reason


def test_an_openpgp_signature_is_invalid_when_commits_are_verified_with_ssh(
        repo: Repo, alice_only: SSHVerifier, gpg_alice: GPGHome) -> None:
    commit = gpg_commit(repo.user, gpg_alice, {"tasks/a.yaml": "a: 1\n"})

    verdict = check(alice_only, repo, commit)

    assert verdict.result == "invalid"
    assert "OpenPGP signature; commits are verified with SSH" in verdict.reason


def test_a_malformed_allowed_signers_file_is_refused_with_each_line_located(
        tmp_path: Path, keys: dict[str, SSHKey]) -> None:
    path = tmp_path / "allowed_signers"
    key = keys["alice"].public.split()
    path.write_text(f"{ALICE} {key[0]} {key[1]}\n"
                    "\n"
                    f"{ALICE} valid-before=2020 {key[0]} {key[1]}\n"
                    f"{ALICE} ssh-ed25519 {key[1][:20]}\n"
                    f"{ALICE}\n")

    with pytest.raises(SignatureConfigError) as raised:
        SSHVerifier(path)

    assert str(raised.value).splitlines() == [
        f"{path}:3:19: allowedSigners: valid-before: '2020' is not YYYYMMDD[Z] or "
        "YYYYMMDDHHMM[SS][Z]",
        f"{path}:4:31: allowedSigners: the key is truncated",
        f"{path}:5:18: allowedSigners: missing the key type and key after the principals",
    ]


def test_an_allowed_signers_file_that_is_missing_or_lists_no_key_is_refused(
        tmp_path: Path) -> None:
    path = tmp_path / "allowed_signers"
    with pytest.raises(SignatureConfigError, match="cannot read the allowed signers file"):
        SSHVerifier(path)
    path.write_text("# nobody yet\n")
    with pytest.raises(SignatureConfigError, match="lists no key"):
        SSHVerifier(path)


# -- GPG -------------------------------------------------------------------------------------


@pytest.fixture
def gpg_alice() -> Iterator[GPGHome]:
    home = GPGHome("Alice Example", ALICE)
    yield home
    home.close()


def gpg_verifier(tmp_path: Path, *homes: GPGHome) -> Iterator[GPGVerifier]:
    keyring = tmp_path / "keyring.asc"
    keyring.write_bytes(b"".join(h.export(tmp_path / "one.asc").read_bytes() for h in homes))
    verifier = GPGVerifier(keyring)
    try:
        yield verifier
    finally:
        verifier.close()


@pytest.fixture
def gpg_trusting_alice(tmp_path: Path, gpg_alice: GPGHome) -> Iterator[GPGVerifier]:
    yield from gpg_verifier(tmp_path, gpg_alice)


def test_a_commit_signed_by_a_key_of_the_keyring_is_verified(
        repo: Repo, gpg_alice: GPGHome, gpg_trusting_alice: GPGVerifier) -> None:
    commit = gpg_commit(repo.user, gpg_alice, {"tasks/a.yaml": "a: 1\n"})

    verdict = check(gpg_trusting_alice, repo, commit)

    assert verdict.verified, verdict
    assert verdict.reason == (f"signed by Alice Example <{ALICE}> with GPG key "
                              f"{gpg_alice.fingerprint}")


def test_gpg_refuses_unsigned_and_changed_commits(
        repo: Repo, gpg_alice: GPGHome, gpg_trusting_alice: GPGVerifier) -> None:
    unsigned = repo.user.commit({"tasks/a.yaml": "a: 1\n"})
    assert check(gpg_trusting_alice, repo, unsigned).result == "unsigned"

    gpg_commit(repo.user, gpg_alice, {"tasks/a.yaml": "a: 2\n"})
    verdict = check(gpg_trusting_alice, repo, tampered(repo.user))
    assert verdict.result == "invalid"
    assert "changed after signing" in verdict.reason


def test_a_key_outside_the_keyring_is_untrusted_even_in_the_users_own_gnupghome(
        repo: Repo, gpg_trusting_alice: GPGVerifier, monkeypatch: pytest.MonkeyPatch) -> None:
    mallory = GPGHome("Mallory", "mallory@example.com")
    try:
        commit = gpg_commit(repo.user, mallory, {"tasks/a.yaml": "a: 1\n"})
        # The daemon's user may have the key (and trust it): that must not count.
        monkeypatch.setenv("GNUPGHOME", str(mallory.home))

        verdict = check(gpg_trusting_alice, repo, commit)
    finally:
        mallory.close()

    assert verdict.result == "untrusted"
    assert "which is not in" in verdict.reason
    assert mallory.fingerprint in verdict.reason


def test_a_revoked_key_is_untrusted(repo: Repo, gpg_alice: GPGHome, tmp_path: Path) -> None:
    commit = gpg_commit(repo.user, gpg_alice, {"tasks/a.yaml": "a: 1\n"})
    gpg_alice.revoke()

    for verifier in gpg_verifier(tmp_path, gpg_alice):
        verdict = check(verifier, repo, commit)
        assert verdict.result == "untrusted"
        assert verdict.reason == f"GPG key {gpg_alice.fingerprint} has been revoked"


def test_an_expired_key_is_untrusted(repo: Repo, tmp_path: Path) -> None:
    old = GPGHome("Old Key", ALICE, expire="1d", made_at="20200101T000000")
    try:
        repo.user.commit({"tasks/a.yaml": "a: 1\n"})
        payload, _ = split_signature(commit_object(repo.user))
        commit = write_commit(repo.user, payload, old.sign(payload, at="20200101T010000"))
        for verifier in gpg_verifier(tmp_path, old):
            verdict = check(verifier, repo, commit)
    finally:
        old.close()

    assert verdict.result == "untrusted"
    assert verdict.reason == f"GPG key {old.fingerprint} has expired"


def test_an_ssh_signature_is_invalid_when_commits_are_verified_with_gpg(
        repo: Repo, keys: dict[str, SSHKey], gpg_trusting_alice: GPGVerifier) -> None:
    commit = ssh_commit(repo.user, keys["alice"], {"tasks/a.yaml": "a: 1\n"})

    verdict = check(gpg_trusting_alice, repo, commit)

    assert verdict.result == "invalid"
    assert "SSH signature; commits are verified with GPG" in verdict.reason


def test_a_keyring_without_keys_is_refused(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.asc"
    with pytest.raises(SignatureConfigError, match="cannot read the keyring: No such file"):
        GPGVerifier(keyring)
    keyring.write_text("not a key\n")
    with pytest.raises(SignatureConfigError, match="holds no OpenPGP public key"):
        GPGVerifier(keyring)
