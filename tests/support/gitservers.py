"""Real Git servers on 127.0.0.1 for tests: `git daemon`, smart HTTP with basic auth (the real
`git http-backend` behind a threaded wsgiref server), and `sshd` restricted to `git-shell`.

Every server binds a free port, is ready when its context manager returns, and is stopped (and
its process reaped) when the block exits. Repositories are made and changed with the real `git`
CLI, the way a user would, with an environment that ignores the machine's Git configuration.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import os
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

GIT = shutil.which("git") or "git"
SSHD = "/usr/sbin/sshd"
READY_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until something accepts connections on 127.0.0.1:port, or fail with the reason."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {READY_TIMEOUT}s")


def git_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """An environment for the git CLI that ignores the machine's and the user's configuration."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home) if home is not None else os.environ.get("HOME", "/tmp"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test User",
        "GIT_AUTHOR_EMAIL": "user@example.com",
        "GIT_COMMITTER_NAME": "Test User",
        "GIT_COMMITTER_EMAIL": "user@example.com",
        "LC_ALL": "C",
    }
    env.update(extra)
    return env


def git(*args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run the git CLI; raise with its stderr on failure; return stdout stripped."""
    proc = subprocess.run(
        [GIT, *map(str, args)],
        cwd=cwd,
        env=dict(env) if env is not None else git_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        command = " ".join(map(str, args))
        raise RuntimeError(f"git {command} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


def write_files(root: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write (or, for None, delete) files relative to root, creating folders as needed."""
    for name, content in files.items():
        path = root / name
        if content is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def make_bare_remote(
    path: Path,
    files: Mapping[str, str | bytes] | Path | None = None,
    *,
    branch: str = "main",
    message: str = "Initial commit",
) -> Path:
    """A bare repository at `path`; with `files` (a mapping or a folder to copy), seeded with one
    commit on `branch` made by the git CLI. Returns `path`."""
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", path)
    if files is None:
        return path
    seed = path.parent / f".seed-{path.name}"
    if isinstance(files, Path):
        shutil.copytree(files, seed)
    else:
        seed.mkdir(parents=True)
        write_files(seed, files)
    git("init", "--quiet", f"--initial-branch={branch}", seed)
    git("add", "--all", cwd=seed)
    git("commit", "--quiet", "-m", message, cwd=seed)
    git("push", "--quiet", str(path), f"HEAD:refs/heads/{branch}", cwd=seed)
    shutil.rmtree(seed)
    return path


def branch_head(bare: Path, branch: str) -> str | None:
    """The commit a branch of a repository points at, read with the git CLI; None if absent."""
    proc = subprocess.run(
        [GIT, "--git-dir", str(bare), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        env=git_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or None


def install_hook(bare: Path, name: str, script: str) -> Path:
    """Install an executable hook (`pre-receive`, `update`, ...) in a bare repository."""
    hook = bare / "hooks" / name
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(script)
    hook.chmod(0o755)
    return hook


def refuse_pushes_to(bare: Path, branch: str, reason: str = "branch is protected") -> Path:
    """Make the server refuse every update of `branch`, the way a protected branch does."""
    script = (
        "#!/bin/sh\n"
        f'if [ "$1" = "refs/heads/{branch}" ]; then\n'
        f'  echo "{reason}" >&2\n'
        "  exit 1\n"
        "fi\n"
    )
    return install_hook(bare, "update", script)


@dataclass
class GitUser:
    """A person working on a remote with the git CLI: a clone, edits, commits and pushes."""

    url: str
    workdir: Path
    name: str = "Alice Example"
    email: str = "alice@example.com"
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = git_env(
            GIT_AUTHOR_NAME=self.name,
            GIT_AUTHOR_EMAIL=self.email,
            GIT_COMMITTER_NAME=self.name,
            GIT_COMMITTER_EMAIL=self.email,
            **self.env,
        )

    def git(self, *args: str | Path) -> str:
        return git(*args, cwd=self.workdir, env=self.env)

    def clone(self, branch: str | None = None) -> GitUser:
        args = ["clone", "--quiet", self.url, str(self.workdir)]
        if branch is not None:
            args[1:1] = ["--branch", branch]
        git(*args, env=self.env)
        return self

    def checkout(self, branch: str, *, create: bool = False, orphan: bool = False) -> None:
        if orphan:
            self.git("checkout", "--quiet", "--orphan", branch)
            self.git("rm", "-r", "--quiet", "--cached", "--ignore-unmatch", ".")
        elif create:
            self.git("checkout", "--quiet", "-b", branch)
        else:
            self.git("checkout", "--quiet", branch)

    def commit(self, files: Mapping[str, str | bytes | None], message: str = "Change") -> str:
        """Write/delete files, commit them all, and return the new commit id."""
        write_files(self.workdir, files)
        self.git("add", "--all", "--", *files.keys())
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def push(self, branch: str = "main", *, force: bool = False) -> None:
        args = ["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"]
        if force:
            args.insert(1, "--force")
        self.git(*args)

    def pull(self, branch: str = "main") -> None:
        self.git("fetch", "--quiet", "origin")
        self.git("reset", "--quiet", "--hard", f"origin/{branch}")

    def log(self, ref: str = "HEAD") -> list[str]:
        """Commit subjects of `ref`, newest first."""
        return self.git("log", "--format=%s", ref).splitlines()

    def show(self, ref: str, path: str) -> bytes:
        return git("show", f"{ref}:{path}", cwd=self.workdir, env=self.env).encode()


class GitDaemon:
    """`git daemon` serving every repository below `root` over git://, pushes allowed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitDaemon:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._process = subprocess.Popen(
            [
                GIT,
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                f"--base-path={self.root}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(self.root),
            ],
            env=git_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self._process)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self._process)


def stop_process(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- smart HTTP ---------------------------------------------------------------------------


def _read_body(environ: Mapping[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        # wsgiref hands the raw socket stream over; libgit2 streams push packs in chunks.
        body = bytearray()
        while True:
            size = int(stream.readline().split(b";")[0].strip(), 16)
            if size == 0:
                stream.readline()
                return bytes(body)
            body += stream.read(size)
            stream.readline()
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return bytes(stream.read(length)) if length else b""


def _check_basic_auth(header: str, username: str, password: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, secret = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return user == username and secret == password


@dataclass(frozen=True)
class HTTPRequest:
    """What the server saw of one request; credentials are never recorded."""

    method: str
    path: str
    status: int
    authenticated: bool


class _GitHTTPApp:
    def __init__(self, root: Path, username: str | None, password: str | None) -> None:
        self.root = root
        self.username = username
        self.password = password
        self.requests: list[HTTPRequest] = []
        self._lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        authed = self.username is None or _check_basic_auth(
            environ.get("HTTP_AUTHORIZATION", ""), self.username, self.password or ""
        )
        if not authed:
            self._record(method, path, 401, authed=False)
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"authentication required\n"]
        status, headers, body = self._backend(environ, _read_body(environ))
        self._record(method, path, int(status.split()[0]), authed=self.username is not None)
        start_response(status, headers)
        return [body]

    def _record(self, method: str, path: str, status: int, *, authed: bool) -> None:
        with self._lock:
            self.requests.append(HTTPRequest(method, path, status, authed))

    def _backend(
        self, environ: Mapping[str, Any], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        env = git_env(
            GIT_PROJECT_ROOT=str(self.root),
            GIT_HTTP_EXPORT_ALL="1",
            REQUEST_METHOD=environ["REQUEST_METHOD"],
            PATH_INFO=environ.get("PATH_INFO", ""),
            QUERY_STRING=environ.get("QUERY_STRING", ""),
            CONTENT_TYPE=environ.get("CONTENT_TYPE", ""),
            CONTENT_LENGTH=str(len(body)),
            REMOTE_ADDR=environ.get("REMOTE_ADDR", "127.0.0.1"),
            REMOTE_USER=self.username or "anonymous",
            GIT_PROTOCOL=environ.get("HTTP_GIT_PROTOCOL", ""),
            HTTP_CONTENT_ENCODING=environ.get("HTTP_CONTENT_ENCODING", ""),
        )
        proc = subprocess.run(
            [GIT, "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, sep, rest = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, _, rest = proc.stdout.partition(b"\n\n")
        status = "200 OK"
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name.strip(), value.strip()))
        return status, headers, rest


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded by the app, without headers; nothing goes to stderr."""


class GitHTTPServer:
    """Smart HTTP (`git http-backend`) for every repository below `root`, with basic auth when
    a username is given. `requests` lists what the server saw, for assertions."""

    def __init__(self, root: Path, *, username: str | None = None, password: str | None = None):
        self.root = root
        self.app = _GitHTTPApp(root, username, password)
        self.port = 0
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> list[HTTPRequest]:
        return list(self.app.requests)

    def url(self, name: str, *, userinfo: str | None = None) -> str:
        auth = f"{userinfo}@" if userinfo else ""
        return f"http://{auth}127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitHTTPServer:
        self.root.mkdir(parents=True, exist_ok=True)
        server = make_server(
            "127.0.0.1", 0, self.app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --- SSH --------------------------------------------------------------------------------------


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
        self._process: subprocess.Popen[bytes] | None = None

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
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
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
        self.port = free_port()
        config = self._config()
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        try:
            wait_for_port(self.port, process=self._process)
        except Exception as exc:
            stop_process(self._process)
            raise RuntimeError(f"sshd did not start: {self.log_file.read_text()}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self._process)

