"""SSH against a real sshd: host keys are verified against known_hosts, keys authenticate."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from reconciler.redact import Redactor
from reconciler.settings import GitCredentials
from reconciler.source.errors import (
    AuthenticationError,
    HostKeyError,
    HostKeyMismatchError,
    SourceConfigurationError,
    UnknownHostKeyError,
)
from reconciler.source.remote import GitRemote
from reconciler.source.writer import commit_files
from tests.support.gitservers import branch_head
from tests.support.gitssh import SSHServer, known_hosts_line, ssh_keygen

PASSPHRASE = "canary-passphrase-93b1"


def credentials(sshd: SSHServer, known_hosts: Path, **extra: object) -> GitCredentials:
    return GitCredentials(ssh_key_file=sshd.client_key, known_hosts_file=known_hosts, **extra)


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
def test_a_known_host_key_is_accepted(
    ssh_server: SSHServer, bare_remote: Path, tmp_path: Path, hashed: bool
) -> None:
    known = tmp_path / "known_hosts"
    other = ssh_keygen(tmp_path / "other_host_key")
    known.write_text(
        "# trusted hosts\n"
        + known_hosts_line("git.example.com", 22, other.with_suffix(".pub"))
        + ssh_server.known_hosts(hashed=hashed)
    )
    remote = GitRemote(ssh_server.url(bare_remote), tmp_path / "state",
                       credentials=credentials(ssh_server, known))
    assert remote.remote_head("main") == branch_head(bare_remote, "main")


def test_an_unknown_host_is_refused_before_authenticating(
    ssh_server: SSHServer, bare_remote: Path, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    other = ssh_keygen(tmp_path / "other_host_key")
    # The same key for the host on the default port does not vouch for another port.
    known.write_text(known_hosts_line("127.0.0.1", 22, ssh_server.host_key.with_suffix(".pub"))
                     + known_hosts_line("git.example.com", 22, other.with_suffix(".pub")))
    remote = GitRemote(ssh_server.url(bare_remote), tmp_path / "state",
                       credentials=credentials(ssh_server, known))

    with pytest.raises(UnknownHostKeyError) as caught:
        remote.fetch(["main"])

    message = str(caught.value)
    assert f"[127.0.0.1]:{ssh_server.port} is not in known_hosts file {known}" in message
    assert "SHA256:" in message
    assert f"ssh-keyscan -p {ssh_server.port} 127.0.0.1" in message
    assert not caught.value.retryable
    assert branch_head(remote.path, "main") is None
    assert "Accepted publickey" not in ssh_server.log_file.read_text()


def test_a_changed_host_key_is_refused(
    ssh_server: SSHServer, bare_remote: Path, tmp_path: Path
) -> None:
    impostor = ssh_keygen(tmp_path / "impostor_key")
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line("127.0.0.1", ssh_server.port, impostor.with_suffix(".pub")))
    remote = GitRemote(ssh_server.url(bare_remote), tmp_path / "state",
                       credentials=credentials(ssh_server, known))

    with pytest.raises(HostKeyMismatchError, match=r"changed.*line 1.*man-in-the-middle"):
        remote.remote_heads()


def test_a_revoked_host_key_is_refused(
    ssh_server: SSHServer, bare_remote: Path, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(ssh_server.known_hosts() + "@revoked * "
                     + " ".join(ssh_server.host_key.with_suffix(".pub").read_text().split()[:2]))
    remote = GitRemote(ssh_server.url(bare_remote), tmp_path / "state",
                       credentials=credentials(ssh_server, known))
    with pytest.raises(HostKeyError, match="@revoked"):
        remote.remote_heads()


def test_a_missing_known_hosts_file_is_a_configuration_error(
    ssh_server: SSHServer, bare_remote: Path, tmp_path: Path
) -> None:
    remote = GitRemote(ssh_server.url(bare_remote), tmp_path / "state",
                       credentials=credentials(ssh_server, tmp_path / "absent"))
    with pytest.raises(SourceConfigurationError, match="absent does not exist"):
        remote.remote_heads()


def test_a_key_the_server_does_not_know_fails_authentication(
    ssh_server: SSHServer, bare_remote: Path, tmp_path: Path
) -> None:
    stranger = ssh_keygen(tmp_path / "stranger")
    creds = GitCredentials(ssh_key_file=stranger,
                           known_hosts_file=ssh_server.write_known_hosts(tmp_path / "kh"))
    remote = GitRemote(ssh_server.url(bare_remote), tmp_path / "state", credentials=creds)
    with pytest.raises(AuthenticationError, match=f"as '{ssh_server.user}' failed.*stranger"):
        remote.remote_heads()


def test_a_passphrase_protected_key(
    tmp_path: Path, bare_remote: Path, log_lines: list[str]
) -> None:
    with SSHServer(tmp_path / "sshd", client_passphrase=PASSPHRASE) as sshd:
        known = sshd.write_known_hosts(tmp_path / "kh")
        good = credentials(sshd, known, ssh_key_passphrase=SecretStr(PASSPHRASE))
        remote = GitRemote(sshd.url(bare_remote), tmp_path / "good", credentials=good)
        assert remote.fetch(["main"]) == {"main": branch_head(bare_remote, "main")}

        wrong = credentials(sshd, known, ssh_key_passphrase=SecretStr("canary-wrong-phrase"))
        remote = GitRemote(sshd.url(bare_remote), tmp_path / "bad", credentials=wrong,
                           redact=Redactor())
        with pytest.raises(AuthenticationError, match="passphrase is wrong") as caught:
            remote.remote_heads()
    assert "canary-wrong-phrase" not in str(caught.value)
    assert not any(PASSPHRASE in line or "canary-wrong" in line for line in log_lines)


def test_status_commits_are_pushed_over_ssh(
    ssh_server: SSHServer, bare_remote: Path, tmp_path: Path
) -> None:
    creds = credentials(ssh_server, ssh_server.write_known_hosts(tmp_path / "kh"))
    remote = GitRemote(ssh_server.url(bare_remote), tmp_path / "state", credentials=creds)
    remote.fetch(["main"], optional=["reconciler-status"])

    commit = commit_files(remote, "reconciler-status", {"status/a.yaml": b"x\n"}, "Status")

    assert commit is not None
    assert branch_head(bare_remote, "reconciler-status") == commit


def test_the_user_name_can_come_from_the_credentials(
    ssh_server: SSHServer, bare_remote: Path, tmp_path: Path
) -> None:
    url = f"ssh://127.0.0.1:{ssh_server.port}{bare_remote}"
    creds = credentials(ssh_server, ssh_server.write_known_hosts(tmp_path / "kh"),
                        username=ssh_server.user)
    remote = GitRemote(url, tmp_path / "state", credentials=creds)
    assert remote.remote_head("main") == branch_head(bare_remote, "main")
