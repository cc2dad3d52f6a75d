"""libgit2 callbacks for one network operation: credentials, SSH host key checks, and the
per-ref results of a push.

pygit2 hands `certificate_check` no certificate (always None) and, without the callback,
accepts any SSH host key. We read the host key libgit2 offers from the `git_cert_hostkey`
struct ourselves and accept it only if the known_hosts file lists it for that host.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import CredentialType
from pygit2.errors import Passthrough
from pygit2.ffi import C, ffi

from reconciler.settings import GitCredentials
from reconciler.source.errors import AuthenticationError, HostKeyError
from reconciler.source.knownhosts import verify_host_key
from reconciler.source.urls import RemoteURL

DEFAULT_SSH_USER = "git"
DEFAULT_HTTP_USER = "git"  # hosts that take a token as the password accept any user name

# git_cert_hostkey of libgit2 >= 1.2: parent cert type, a bitmask of what is filled in, MD5,
# SHA-1 and SHA-256 digests of the key, the raw key's type, the raw key and its length.
# pygit2 declares only the first fields, so the struct is unpacked with native alignment.
_HOSTKEY_LAYOUT = struct.Struct("@iI16s20s32siPN")
_SSH_SHA1, _SSH_SHA256, _SSH_RAW = 1 << 1, 1 << 2, 1 << 3


class Callbacks(pygit2.RemoteCallbacks):
    """Callbacks for one connect, fetch or push. Create a new instance per operation: a second
    credentials request within one operation means the first answer was refused."""

    def __init__(self, remote: RemoteURL, credentials: GitCredentials) -> None:
        super().__init__()
        self._remote = remote
        self._credentials = credentials
        self._attempts = 0
        self.refused: dict[str, str] = {}
        """Push results: remote ref name → the server's reason, for every refused update."""
        self.accepted: set[str] = set()

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> Any:
        creds = self._credentials
        user = username_from_url or self._remote.username or creds.username
        wanted = CredentialType.SSH_KEY | CredentialType.USERPASS_PLAINTEXT
        if allowed_types & CredentialType.USERNAME and not allowed_types & wanted:
            # An ssh URL without a user: libgit2 asks for the name before the key.
            return pygit2.Username(user or DEFAULT_SSH_USER)
        self._attempts += 1
        if self._attempts > 1:
            raise AuthenticationError(self._refused_message(user))
        if allowed_types & CredentialType.SSH_KEY:
            return self._ssh_key(user or DEFAULT_SSH_USER)
        if allowed_types & CredentialType.USERPASS_PLAINTEXT:
            password = creds.password.get_secret_value() if creds.password else None
            password = password if password is not None else self._remote.password
            if password is None and self._remote.username:
                password = ""  # `https://TOKEN@host/...`: the token is the user name
            if password is None:
                raise AuthenticationError(
                    f"{self._remote} asks for a user name and password, and none is configured"
                    " (set --git-username and --git-password-file)"
                )
            return pygit2.UserPass(user or DEFAULT_HTTP_USER, password)
        raise AuthenticationError(
            f"{self._remote} asks for an authentication method that is not supported"
        )

    def _ssh_key(self, user: str) -> Any:
        key_file = self._credentials.ssh_key_file
        if key_file is None:
            if os.environ.get("SSH_AUTH_SOCK"):
                return pygit2.KeypairFromAgent(user)
            raise AuthenticationError(
                f"{self._remote} needs an SSH key, and none is configured (set --ssh-key-file)"
            )
        public = Path(f"{key_file}.pub")
        passphrase = self._credentials.ssh_key_passphrase
        return pygit2.Keypair(
            user,
            str(public) if public.is_file() else None,
            str(key_file),
            passphrase.get_secret_value() if passphrase else "",
        )

    def _refused_message(self, user: str | None) -> str:
        if self._remote.scheme == "ssh":
            what = f"the key {self._credentials.ssh_key_file or '(from ssh-agent)'}"
            if self._credentials.ssh_key_passphrase is not None:
                what += " (or its passphrase is wrong)"
            return f"authentication to {self._remote} as {user or 'git'!r} failed: check {what}"
        # No user name here: over HTTPS it is sometimes the token itself.
        return f"authentication to {self._remote} failed: check the user name and password or token"

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        if self._remote.scheme != "ssh":
            raise Passthrough  # TLS: libgit2's own verification against the system CAs
        known_hosts = self._credentials.known_hosts_file
        if known_hosts is None:
            raise HostKeyError(
                f"{self._remote}: no known_hosts file is configured, so the host key cannot be"
                " verified (set --known-hosts-file)"
            )
        key = _offered_host_key(_certificate_of_caller(), self._remote)
        verify_host_key(known_hosts, self._remote.known_hosts_name, key)
        return True

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.refused[refname] = message
        else:
            self.accepted.add(refname)


def _certificate_of_caller() -> Any:
    """The `git_cert *` libgit2 passed to pygit2's C-level callback, which calls our method
    with None in its place. Found in the calling frames; None if pygit2 ever renames it."""
    frame = sys._getframe(1)
    for _ in range(4):
        frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return None
        candidate = frame.f_locals.get("cert_i")
        if candidate is not None and ffi.typeof(candidate) is ffi.typeof("git_cert *"):
            return candidate
    return None


def _offered_host_key(cert: Any, remote: RemoteURL) -> bytes:
    unreadable = HostKeyError(
        f"{remote}: cannot read the SSH host key the server offered; refusing to connect"
    )
    if cert is None or cert.cert_type != C.GIT_CERT_HOSTKEY_LIBSSH2:
        raise unreadable
    raw = bytes(ffi.buffer(ffi.cast("unsigned char *", cert), _HOSTKEY_LAYOUT.size))
    _, kinds, _, sha1, sha256, _, pointer, length = _HOSTKEY_LAYOUT.unpack(raw)
    if not kinds & _SSH_RAW or not pointer or not 0 < length < 65536:
        raise unreadable
    key = bytes(ffi.buffer(ffi.cast("char *", pointer), length))
    # libgit2 hashed the same key: a mismatch means the struct is not laid out as expected.
    if kinds & _SSH_SHA1 and hashlib.sha1(key).digest() != sha1:  # noqa: S324 - a layout check
        raise unreadable
    if kinds & _SSH_SHA256 and hashlib.sha256(key).digest() != sha256:
        raise unreadable
    return key
