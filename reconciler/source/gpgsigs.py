"""OpenPGP commit signatures, checked by `gpg --verify --status-fd` in a private GNUPGHOME.

The home is a fresh temporary folder holding only the operator's keyring, imported once at
start: the user's own keys and trust settings never count, and nothing reaches out to a
keyserver or starts an agent. A commit is accepted only on a VALIDSIG whose primary key is in
the keyring, with a GOODSIG and no sign of a revoked or expired key or signature (gpg exits 0
for those too, so its status lines are what is read, never its exit code).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from tempfile import NamedTemporaryFile, TemporaryDirectory

from reconciler.source.verdicts import UNSIGNED, SignatureConfigError, SignedCommit, Verdict

_ARMOR = b"-----BEGIN PGP SIGNATURE-----"
_TIMEOUT = 30.0
_STATUS = "[GNUPG:] "
# Status keywords that refuse a signature gpg otherwise calls good, and what they mean.
_REFUSING = {
    "REVKEYSIG": "has been revoked",
    "KEYREVOKED": "has been revoked",
    "EXPKEYSIG": "has expired",
    "EXPSIG": "made a signature that has expired",
}


class GPGVerifier:
    def __init__(self, keyring: Path, *, gpg: str | None = None) -> None:
        self.path = keyring
        found = gpg or shutil.which("gpg")
        if found is None:
            raise SignatureConfigError("commits.verify: gpg needs GnuPG (gpg) on PATH")
        self._gpg = found
        try:
            self._keys = keyring.read_bytes()
        except OSError as err:
            raise SignatureConfigError(
                f"{keyring}: keyring: cannot read the keyring: {err.strerror}") from None
        # Short and private: gpg refuses a home others can read, and socket paths are short.
        self._dir = TemporaryDirectory(prefix="reconciler-gpg-")
        self._home = Path(self._dir.name)
        try:
            self.fingerprints = self._import()
        except BaseException:
            self._dir.cleanup()
            raise

    def close(self) -> None:
        self._dir.cleanup()

    def _import(self) -> frozenset[str]:
        self._home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._home.chmod(0o700)
        imported = self._run(["--import"], self._keys)
        listed = self._run(["--with-colons", "--fixed-list-mode", "--list-keys"], b"")
        fingerprints: set[str] = set()
        primary = False
        for line in listed.stdout.splitlines():
            fields = line.split(":")
            if fields[0] in ("pub", "sub"):
                primary = fields[0] == "pub"
            elif fields[0] == "fpr" and primary and len(fields) > 9:
                fingerprints.add(fields[9].upper())
                primary = False
        if not fingerprints:
            problem = imported.stderr.strip().splitlines()[-1:] or ["nothing imported"]
            raise SignatureConfigError(
                f"{self.path}: keyring: holds no OpenPGP public key ({problem[0]})")
        return frozenset(fingerprints)

    def verify(self, commit: SignedCommit) -> Verdict:
        if commit.signature is None:
            return UNSIGNED
        if not commit.signature.lstrip().startswith(_ARMOR):
            if b"BEGIN SSH SIGNATURE" in commit.signature[:64]:
                return Verdict("invalid", "the commit has an SSH signature; commits are "
                                          "verified with GPG")
            return Verdict("invalid", "the commit's signature is not an OpenPGP signature")
        if not (self._home / "pubring.kbx").is_file():
            self._import()  # a temp cleaner removed the home of a long run
        with NamedTemporaryFile(dir=self._home, suffix=".asc") as sig:
            sig.write(commit.signature)
            sig.flush()
            proc = self._run(["--verify", sig.name, "-"], commit.payload)
        return self._verdict(_status(proc.stdout))

    def _verdict(self, status: list[list[str]]) -> Verdict:
        keywords = {fields[0] for fields in status}
        if sum(1 for fields in status if fields[0] == "NEWSIG") > 1:
            return Verdict("invalid", "the commit carries more than one OpenPGP signature")
        if "BADSIG" in keywords:
            return Verdict("invalid", "the GPG signature does not match the commit: it was "
                                      "changed after signing")
        errsig = next((fields for fields in status if fields[0] == "ERRSIG"), None)
        if errsig is not None:
            key = errsig[-1] if len(errsig) > 7 else errsig[1]
            if "NO_PUBKEY" in keywords:
                return Verdict("untrusted", f"signed by GPG key {key}, which is not in "
                                            f"{self.path}")
            return Verdict("invalid", f"gpg cannot check the signature by key {key}")
        valid = next((fields for fields in status if fields[0] == "VALIDSIG"), None)
        good = next((fields for fields in status if fields[0] == "GOODSIG"), None)
        key = valid[-1].upper() if valid else "?"
        refusing = sorted(k for k in keywords if k in _REFUSING)
        if refusing:
            return Verdict("untrusted", f"GPG key {key} {_REFUSING[refusing[0]]}")
        if valid is None or good is None:
            return Verdict("invalid", "gpg did not confirm the signature")
        if key not in self.fingerprints:
            return Verdict("untrusted", f"signed by GPG key {key}, which is not in {self.path}")
        signer = " ".join(good[2:]) or key
        return Verdict("verified", f"signed by {signer} with GPG key {key}", signer=signer)

    def _run(self, args: list[str], stdin: bytes) -> subprocess.CompletedProcess[str]:
        command = [self._gpg, "--homedir", str(self._home), "--batch", "--no-tty",
                   "--no-autostart", "--no-auto-key-retrieve", "--status-fd", "1", *args]
        proc = subprocess.run(command, input=stdin, capture_output=True, timeout=_TIMEOUT,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C",
                                   "GNUPGHOME": str(self._home)}, check=False)
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))


def _status(output: str) -> list[list[str]]:
    return [line[len(_STATUS):].split() for line in output.splitlines()
            if line.startswith(_STATUS) and len(line) > len(_STATUS)]
