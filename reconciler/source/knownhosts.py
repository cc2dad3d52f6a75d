"""SSH host key verification against an OpenSSH known_hosts file.

Supports what `ssh-keyscan` and `ssh-keygen -H` write: plain host patterns (with `*`, `?`,
`!negation` and `[host]:port`), hashed names (`|1|salt|hmac`), and `@revoked` lines. Lines
marked `@cert-authority` are skipped: libssh2 never presents host certificates.
The file is read on every connection, so a rotated key is picked up without a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.source.errors import (
    HostKeyError,
    HostKeyMismatchError,
    SourceConfigurationError,
    UnknownHostKeyError,
)


@dataclass(frozen=True)
class KnownHost:
    line: int
    marker: str | None
    hosts: str
    key_type: str
    key: bytes

    def matches(self, name: str) -> bool:
        """Whether this line's host field names `name` (`host` or `[host]:port`)."""
        if self.hosts.startswith("|1|"):
            return _hashed_match(self.hosts, name)
        matched = False
        for pattern in self.hosts.split(","):
            negated = pattern.startswith("!")
            if _glob(pattern.removeprefix("!")).fullmatch(name):
                if negated:
                    return False
                matched = True
        return matched


def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH host patterns know only `*` and `?`; `[` is literal (as in `[host]:port`)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE)


def _hashed_match(field: str, name: str) -> bool:
    try:
        _, _, salt, digest = field.split("|")
        expected = base64.b64decode(digest)
        actual = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(expected, actual)


def fingerprint(key: bytes) -> str:
    """The OpenSSH fingerprint of a public key blob: `SHA256:<base64, unpadded>`."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=")


def load_known_hosts(path: Path) -> list[KnownHost]:
    """Parse a known_hosts file; lines that are not host keys are skipped like ssh does."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise SourceConfigurationError(
            f"known_hosts file {path} does not exist; refusing to trust any SSH host key"
        ) from None
    except OSError as exc:
        raise SourceConfigurationError(
            f"cannot read known_hosts file {path}: {exc.strerror}"
        ) from None
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        try:
            key = base64.b64decode(fields[2], validate=True)
        except binascii.Error:
            continue
        entries.append(KnownHost(number, marker, fields[0], fields[1], key))
    return entries


def verify_host_key(path: Path, name: str, key: bytes) -> None:
    """Accept `key` for host `name` only when the known_hosts file at `path` lists exactly that
    key for that host. Raises UnknownHostKeyError, HostKeyMismatchError or HostKeyError."""
    entries = [e for e in load_known_hosts(path) if e.matches(name)]
    if any(e.marker == "@revoked" and e.key == key for e in entries):
        raise HostKeyError(
            f"the SSH host key of {name} ({fingerprint(key)}) is marked @revoked in {path}"
        )
    trusted = [e for e in entries if e.marker is None]
    if any(e.key == key for e in trusted):
        return
    if not trusted:
        host, _, port = name.strip("[").partition("]:")
        scan = f"ssh-keyscan {'-p ' + port + ' ' if port else ''}{host}"
        raise UnknownHostKeyError(
            f"the SSH host {name} is not in known_hosts file {path} (it offered "
            f"{fingerprint(key)}); after checking that fingerprint, add it: {scan} >> {path}"
        )
    lines = ", ".join(str(e.line) for e in trusted)
    raise HostKeyMismatchError(
        f"the SSH host key of {name} changed: it offered {fingerprint(key)}, which does not "
        f"match {path} line {lines}; refusing to connect (possible man-in-the-middle)"
    )
