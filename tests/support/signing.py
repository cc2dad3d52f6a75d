"""Real signing keys and signed commits for tests: SSH keys from `ssh-keygen -t ed25519`, GnuPG
keys generated in batch mode in a throw-away GNUPGHOME, commits signed by the `git` CLI, and
commit objects forged with `git hash-object` (a changed commit keeping its old signature, a
signature made for another namespace)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from tests.support.gitservers import GIT, GitUser, write_files

GPG = shutil.which("gpg") or "gpg"


@dataclass(frozen=True)
class SSHKey:
    private: Path
    public: str
    """`ssh-ed25519 AAAA… comment`, as in the `.pub` file."""

    def signer_line(self, principals: str, options: str = "") -> str:
        """An allowed_signers line for this key."""
        key = " ".join(self.public.split()[:2])
        return f"{principals} {options + ' ' if options else ''}{key}\n"


def ssh_key(folder: Path, name: str) -> SSHKey:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return SSHKey(private=path, public=(folder / f"{name}.pub").read_text().strip())


def ssh_certificate(ca: SSHKey, key: SSHKey, principals: str, validity: str = "-1d:+1d"
                    ) -> SSHKey:
    """`key` certified by `ca` for `principals`; signing with the returned key (its
    `-cert.pub` as the signing key file) makes signatures that carry the certificate."""
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca.private), "-I", principals,
                    "-n", principals, "-V", validity, f"{key.private}.pub"],
                   check=True, capture_output=True, timeout=30)
    cert = key.private.parent / f"{key.private.name}-cert.pub"
    return SSHKey(private=cert, public=cert.read_text().strip())


def ssh_sign(key: SSHKey, data: bytes, namespace: str) -> bytes:
    """An SSHSIG armor over `data` made by `ssh-keygen -Y sign`."""
    proc = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key.private),
                           "-n", namespace], input=data, capture_output=True, timeout=30,
                          check=True)
    return proc.stdout


class GPGHome:
    """A private GNUPGHOME with one generated signing key; its agent is stopped on close.
    Lives under /tmp with a short name: gpg-agent's socket path must stay short."""

    def __init__(self, name: str, email: str, *, expire: str = "0",
                 made_at: str | None = None) -> None:
        self._dir = TemporaryDirectory(prefix="gpg-", dir="/tmp")
        self.home = Path(self._dir.name)
        self.email = email
        params = ("%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n"
                  f"Name-Real: {name}\nName-Email: {email}\nExpire-Date: {expire}\n%commit\n")
        faked = ["--faked-system-time", made_at] if made_at else []
        self.gpg("--gen-key", *faked, stdin=params.encode())
        listed = self.gpg("--with-colons", "--list-secret-keys").decode()
        self.fingerprint = next(line.split(":")[9] for line in listed.splitlines()
                                if line.startswith("fpr:"))

    def gpg(self, *args: str, stdin: bytes = b"") -> bytes:
        proc = subprocess.run([GPG, "--homedir", str(self.home), "--batch", "--quiet", *args],
                              input=stdin, capture_output=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)}: {proc.stderr.decode()}")
        return proc.stdout

    def export(self, path: Path) -> Path:
        path.write_bytes(self.gpg("--export", "--armor", self.fingerprint))
        return path

    def sign(self, data: bytes, *, at: str | None = None) -> bytes:
        faked = ["--faked-system-time", at] if at else []
        return self.gpg(*faked, "--detach-sign", "--armor", "-u", self.fingerprint, stdin=data)

    def revoke(self) -> None:
        """Import the revocation certificate gpg made with the key."""
        cert = (self.home / "openpgp-revocs.d" / f"{self.fingerprint}.rev").read_text()
        self.gpg("--import", stdin=cert.replace(":-----BEGIN", "-----BEGIN").encode())

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                       capture_output=True, timeout=30, check=False)
        self._dir.cleanup()


def ssh_commit(user: GitUser, key: SSHKey, files: Mapping[str, str | None],
               message: str = "Signed change") -> str:
    """Commit `files` signed with an SSH key, the way a user configured for it does."""
    return _commit(user, files, message, "-c", "gpg.format=ssh",
                   "-c", f"user.signingkey={key.private}")


def gpg_commit(user: GitUser, home: GPGHome, files: Mapping[str, str | None],
               message: str = "Signed change") -> str:
    return _commit(user, files, message, "-c", "gpg.format=openpgp",
                   "-c", f"user.signingkey={home.fingerprint}", gnupghome=home.home)


def _commit(user: GitUser, files: Mapping[str, str | None], message: str, *config: str,
            gnupghome: Path | None = None) -> str:
    write_files(user.workdir, files)
    env = dict(user.env, **({"GNUPGHOME": str(gnupghome)} if gnupghome else {}))
    for args in (["add", "--all"], [*config, "commit", "--quiet", "--allow-empty", "-S",
                                      "-m", message]):
        subprocess.run([GIT, *args], cwd=user.workdir, env=env, check=True,
                       capture_output=True, timeout=60)
    return user.git("rev-parse", "HEAD")


def commit_object(user: GitUser, revision: str = "HEAD") -> bytes:
    return subprocess.run([GIT, "cat-file", "commit", revision], cwd=user.workdir,
                          env=user.env, capture_output=True, check=True, timeout=30).stdout


def split_signature(raw: bytes) -> tuple[bytes, bytes]:
    """(the commit without its gpgsig header, the signature armor)."""
    kept, signature, inside = [], [], False
    for line in raw.split(b"\n"):
        if line.startswith(b"gpgsig "):
            inside = True
            signature.append(line[len(b"gpgsig "):])
        elif inside and line.startswith(b" "):
            signature.append(line[1:])
        else:
            inside = False
            kept.append(line)
    return b"\n".join(kept), b"\n".join(signature) + b"\n"


def write_commit(user: GitUser, payload: bytes, signature: bytes | None) -> str:
    """Store a commit object made of `payload` with `signature` as its gpgsig header, and
    make it the user's HEAD (`git hash-object -w -t commit`)."""
    raw = payload
    if signature is not None:
        header, _, body = payload.partition(b"\n\n")
        folded = b"\n ".join(signature.rstrip(b"\n").split(b"\n"))
        raw = header + b"\ngpgsig " + folded + b"\n\n" + body
    commit = subprocess.run([GIT, "hash-object", "-w", "-t", "commit", "--stdin"],
                            cwd=user.workdir, env=user.env, input=raw, capture_output=True,
                            check=True, timeout=30).stdout.decode().strip()
    user.git("reset", "--quiet", "--hard", commit)
    return commit


def tampered(user: GitUser) -> str:
    """HEAD rewritten with another message, keeping its signature."""
    payload, signature = split_signature(commit_object(user))
    return write_commit(user, payload.replace(b"\n\n", b"\n\nTampered: ", 1), signature)
