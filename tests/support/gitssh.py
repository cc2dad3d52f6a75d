"""A real `sshd` for tests on 127.0.0.1, accepting only its own client keys and running only
`git-shell`; plus key and known_hosts helpers."""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.gitservers import InetdListener

SSHD = "/usr/sbin/sshd"


def sshd_missing_reason() -> str | None:
    """Why SSH tests cannot run here, or None when they can."""
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (Debian package openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed (Debian package openssh-client)"
    if shutil.which("git-shell") is None:
        return "git-shell is not installed (Debian package git)"
    return None


def ssh_keygen(path: Path, *, passphrase: str = "", kind: str = "ed25519") -> Path:
    """A new key pair at `path` and `path.pub`; returns the private key path."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def known_hosts_line(host: str, port: int, public_key_file: Path, *, hashed: bool = False) -> str:
    """A known_hosts line for host:port, plain or hashed the way `ssh-keygen -H` writes it."""
    name = host if port == 22 else f"[{host}]:{port}"
    key = " ".join(public_key_file.read_text().split()[:2])
    if hashed:
        salt = os.urandom(20)
        digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
        name = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    return f"{name} {key}\n"


class SSHServer:
    """A real `sshd` on 127.0.0.1 that accepts the client keys it made and runs only
    `git-shell`, so a key can fetch and push but not open a shell. Repositories are addressed
    by absolute path: `ssh://USER@127.0.0.1:PORT/abs/path.git`."""

    def __init__(self, workdir: Path, *, client_passphrase: str = "") -> None:
        self.workdir = workdir
        self.user = getpass.getuser()
        self.port = 0
        self.host_key = workdir / "ssh_host_ed25519_key"
        self.client_key = workdir / "client_ed25519"
        self.client_passphrase = client_passphrase
        self.log_file = workdir / "sshd.log"
        self._listener: InetdListener | None = None

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo.resolve()}"

    def known_hosts(self, *, hashed: bool = False) -> str:
        public = self.host_key.with_suffix(".pub")
        return known_hosts_line("127.0.0.1", self.port, public, hashed=hashed)

    def write_known_hosts(self, path: Path, *, hashed: bool = False) -> Path:
        path.write_text(self.known_hosts(hashed=hashed))
        return path

    def authorize(self, private_key: Path) -> None:
        """Accept another client key (restricted to git-shell like the first)."""
        public = private_key.with_suffix(".pub").read_text().strip()
        forced = 'command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"",restrict'
        with (self.workdir / "authorized_keys").open("a") as out:
            out.write(f"{forced} {public}\n")

    def _config(self) -> Path:
        config = self.workdir / "sshd_config"
        lines = [
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            # Keys live in a temporary folder below the world-writable /tmp.
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "MaxStartups 100",
            "LogLevel VERBOSE",
        ]
        config.write_text("\n".join(lines) + "\n")
        return config

    def __enter__(self) -> SSHServer:
        reason = sshd_missing_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        ssh_keygen(self.host_key)
        ssh_keygen(self.client_key, passphrase=self.client_passphrase)
        self.authorize(self.client_key)
        # sshd in inetd mode (-i), one process per connection, behind our own socket.
        self._listener = InetdListener(
            [SSHD, "-i", "-e", "-f", str(self._config())], stderr=self.log_file,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        self.port = self._listener.port
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener.close()
