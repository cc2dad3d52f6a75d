"""SSH commit signatures, checked by `ssh-keygen -Y verify` against an `allowed_signers` file.

`ssh-keygen` is the reference for the format (principal patterns, `cert-authority`,
`namespaces`, `valid-after`/`valid-before`), and a key is looked up as `git verify-commit`
looks it up: for the committer's address first, else for any principal it is listed for. Two
differences, both stricter: validity times are checked at the time of verification, not at
the committer date the signer wrote, and the namespace must be `git`.

The file is read once and copied into a private folder, so the verdicts kept for commits stay
consistent with it. `ssh-keygen` skips lines it cannot parse; here they stop the start with a
located error instead, so a typo never silently drops a signer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import struct
import subprocess
from pathlib import Path
from tempfile import NamedTemporaryFile, TemporaryDirectory

from reconciler.source.signaturefiles import read_allowed_signers
from reconciler.source.verdicts import UNSIGNED, SignatureConfigError, SignedCommit, Verdict

_ARMOR = (b"-----BEGIN SSH SIGNATURE-----", b"-----END SSH SIGNATURE-----")
NAMESPACE = "git"
_TIMEOUT = 30.0
_COPY = "allowed_signers"


class SSHVerifier:
    def __init__(self, allowed_signers: Path, *, ssh_keygen: str | None = None) -> None:
        self.path = allowed_signers
        text = read_allowed_signers(allowed_signers)
        found = ssh_keygen or shutil.which("ssh-keygen")
        if found is None:
            raise SignatureConfigError("commits.verify: ssh needs ssh-keygen (OpenSSH 8.2 or "
                                       "later) on PATH")
        self._ssh_keygen = found
        self._text = text
        self._dir = TemporaryDirectory(prefix="reconciler-ssh-")
        self._folder = Path(self._dir.name)
        self._place_copy()

    def _place_copy(self) -> None:
        # Again before each check: a temp cleaner may have removed the folder of a long run.
        if not (self._folder / _COPY).is_file():
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self._folder / _COPY).write_text(self._text)

    def close(self) -> None:
        self._dir.cleanup()

    def verify(self, commit: SignedCommit) -> Verdict:
        if commit.signature is None:
            return UNSIGNED
        try:
            key, namespace = parse_signature(commit.signature)
        except ValueError as err:
            return Verdict("invalid", str(err))
        fingerprint = key_fingerprint(key)
        if namespace != NAMESPACE:
            return Verdict("invalid", f"the SSH signature (key {fingerprint}) is for namespace "
                                      f"{namespace!r}, not {NAMESPACE!r}")
        self._place_copy()
        with NamedTemporaryFile(dir=self._folder, suffix=".sig") as sig:
            sig.write(commit.signature)
            sig.flush()
            # As `git verify-commit` does: the committer's address when the key is listed for
            # it, else any principal the key is listed for (a CI bot's key, a merge key).
            tried = self._verify_as(commit.committer_email, sig.name, commit.payload)
            if tried.returncode == 0:
                return _verified(commit.committer_email, fingerprint)
            for principal in self._principals(sig.name):
                if self._verify_as(principal, sig.name, commit.payload).returncode == 0:
                    return _verified(principal, fingerprint)
            return self._refusal(sig.name, commit, fingerprint, tried.stderr)

    def _verify_as(self, principal: str, sig: str,
                   payload: bytes) -> subprocess.CompletedProcess[str]:
        return self._run(["-Y", "verify", "-f", _COPY, "-I", principal, "-n", NAMESPACE,
                          "-s", sig], payload)

    def _principals(self, sig: str) -> list[str]:
        """The principals the signing key is listed for (none when it is not listed)."""
        found = self._run(["-Y", "find-principals", "-f", _COPY, "-s", sig], b"")
        return found.stdout.split() if found.returncode == 0 else []

    def _refusal(self, sig: str, commit: SignedCommit, fingerprint: str, stderr: str) -> Verdict:
        """Why `-Y verify` said no: a changed commit, a key listed for others, a key whose
        line does not allow it now, or a key not listed at all."""
        intact = self._run(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", sig],
                           commit.payload)
        if intact.returncode != 0:
            return Verdict("invalid", f"the SSH signature (key {fingerprint}) does not match "
                                      "the commit: it was changed after signing")
        # ssh-keygen names the line that matched the key and why it did not count.
        details = [line.removeprefix(_COPY).strip(": ") for line in stderr.splitlines()
                   if line.startswith(_COPY + ":")]
        if details:
            return Verdict("untrusted", f"SSH key {fingerprint}: {self.path}:{details[0]}")
        return Verdict("untrusted", f"SSH key {fingerprint} is not in {self.path}")

    def _run(self, args: list[str], stdin: bytes) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self._ssh_keygen, *args], input=stdin, capture_output=True, cwd=self._folder,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, timeout=_TIMEOUT, check=False)
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))


def parse_signature(armored: bytes) -> tuple[bytes, str]:
    """The signing public key (wire format) and the namespace of an SSHSIG armor."""
    lines = armored.strip().splitlines()
    if len(lines) < 3 or lines[0].strip() != _ARMOR[0] or lines[-1].strip() != _ARMOR[1]:
        if b"BEGIN PGP" in armored[:64]:
            raise ValueError("the commit has an OpenPGP signature; commits are verified with SSH")
        raise ValueError("the commit's signature is not an SSH signature")
    try:
        blob = base64.b64decode(b"".join(line.strip() for line in lines[1:-1]), validate=True)
    except binascii.Error:
        raise ValueError("the SSH signature is not valid base64") from None
    if not blob.startswith(b"SSHSIG"):
        raise ValueError("the SSH signature has no SSHSIG magic")
    try:
        fields = _strings(blob[10:], 2)
    except (ValueError, struct.error):
        raise ValueError("the SSH signature is truncated") from None
    return fields[0], fields[1].decode(errors="replace")


def _strings(data: bytes, count: int) -> list[bytes]:
    out, offset = [], 0
    for _ in range(count):
        (size,) = struct.unpack_from(">I", data, offset)
        offset += 4
        if offset + size > len(data):
            raise ValueError("truncated")
        out.append(data[offset:offset + size])
        offset += size
    return out


def key_fingerprint(key: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (`ssh-keygen -l`)."""
    digest = base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _verified(signer: str, fingerprint: str) -> Verdict:
    return Verdict("verified", f"signed by {signer} with SSH key {fingerprint}", signer=signer)
