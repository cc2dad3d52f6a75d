"""known_hosts matching as OpenSSH does it: patterns, ports, hashed names, markers."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from reconciler.source.errors import (
    HostKeyError,
    HostKeyMismatchError,
    SourceConfigurationError,
    UnknownHostKeyError,
)
from reconciler.source.knownhosts import fingerprint, load_known_hosts, verify_host_key

KEY_A = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))
KEY_B = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(1, 33))
A = base64.b64encode(KEY_A).decode()
B = base64.b64encode(KEY_B).decode()


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.fixture
def known_hosts(tmp_path: Path) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(
        "# comment line\n"
        "\n"
        f"github.com,140.82.121.4 ssh-ed25519 {A}\n"
        f"[git.example.com]:2222 ssh-ed25519 {A} deploy\n"
        f"*.corp.example,!evil.corp.example ssh-ed25519 {A}\n"
        f"{hashed('[10.0.0.5]:7999')} ssh-ed25519 {A}\n"
        f"@cert-authority *.example.org ssh-ed25519 {B}\n"
        "broken line\n"
        "bad.example ssh-ed25519 not-base64!!\n"
    )
    return path


@pytest.mark.parametrize(
    "name",
    ["github.com", "GitHub.com", "140.82.121.4", "[git.example.com]:2222",
     "build.corp.example", "[10.0.0.5]:7999"],
)
def test_listed_hosts_with_their_key_are_trusted(known_hosts: Path, name: str) -> None:
    verify_host_key(known_hosts, name, KEY_A)


@pytest.mark.parametrize(
    "name",
    [
        "gitlab.com",
        "[github.com]:2222",  # another port is another host
        "git.example.com",  # the entry is for port 2222 only
        "evil.corp.example",  # negated
        "[10.0.0.5]:22",
        "host.example.org",  # @cert-authority lines are not host keys
        "bad.example",
        "[git.example.com]2222",
    ],
)
def test_hosts_without_an_entry_are_unknown(known_hosts: Path, name: str) -> None:
    with pytest.raises(UnknownHostKeyError, match="is not in known_hosts"):
        verify_host_key(known_hosts, name, KEY_A)


def test_another_key_for_a_listed_host_is_a_mismatch(known_hosts: Path) -> None:
    with pytest.raises(HostKeyMismatchError) as caught:
        verify_host_key(known_hosts, "[git.example.com]:2222", KEY_B)
    assert fingerprint(KEY_B) in str(caught.value)
    assert "line 4" in str(caught.value)


def test_any_listed_key_of_a_host_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    path.write_text(f"example.com ssh-ed25519 {A}\nexample.com ssh-ed25519 {B}\n")
    verify_host_key(path, "example.com", KEY_B)


def test_revoked_keys_are_refused_even_when_listed(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    path.write_text(f"example.com ssh-ed25519 {A}\n@revoked * ssh-ed25519 {A}\n")
    with pytest.raises(HostKeyError, match="revoked"):
        verify_host_key(path, "example.com", KEY_A)


def test_fingerprint_matches_openssh_format() -> None:
    assert fingerprint(KEY_A).startswith("SHA256:")
    assert not fingerprint(KEY_A).endswith("=")


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigurationError, match="does not exist; refusing"):
        load_known_hosts(tmp_path / "absent")
