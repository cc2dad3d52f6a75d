"""Real Git servers on 127.0.0.1 for tests: `git daemon` (here), smart HTTP with basic auth
(`tests.support.githttp`) and `sshd` restricted to `git-shell` (`tests.support.gitssh`).

Every server binds a free port, is ready when its context manager returns, and is stopped (and
its process reaped) when the block exits. Repositories are made and changed with the real `git`
CLI, the way a user would, with an environment that ignores the machine's Git configuration.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIT = shutil.which("git") or "git"


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
        # No background `gc --auto`: it would race with tests removing their folders.
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "gc.auto",
        "GIT_CONFIG_VALUE_0": "0",
        "GIT_CONFIG_KEY_1": "maintenance.auto",
        "GIT_CONFIG_VALUE_1": "false",
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


def push_once_before_the_next(bare: Path, user: GitUser, marker: Path, *push: str) -> Path:
    """Make `user` push (`git push --quiet origin PUSH...`) from inside the server's next
    receive, once: a push that lands while another is in flight. `marker` records that it
    happened."""
    clean_env = " ".join(f"{k}={shlex.quote(v)}" for k, v in user.env.items())
    pushed = " ".join(shlex.quote(arg) for arg in push)
    return install_hook(
        bare,
        "pre-receive",
        "#!/bin/sh\n"
        f"[ -e {marker} ] && exit 0\n"
        f"touch {marker}\n"
        f"env -i {clean_env} git -C {user.workdir} push --quiet origin {pushed}\n",
    )


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


class InetdListener:
    """A listening socket of ours on 127.0.0.1, bound to port 0, whose every connection is
    handed to a new process of a real server in inetd mode (`git daemon --inetd`, `sshd -i`)
    as its standard input and output. No other process can take the port between choosing
    it and serving on it, as it could with a port chosen first and passed to the server."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str],
                 stderr: Path | None = None) -> None:
        self._argv = list(argv)
        self._env = dict(env)
        self._stderr = stderr
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]
        self._served: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="inetd", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:  # shut down: the server is stopping
                return
            with conn, contextlib.ExitStack() as files:
                err = (files.enter_context(self._stderr.open("ab")) if self._stderr
                       else subprocess.DEVNULL)
                process = subprocess.Popen(self._argv, stdin=conn.fileno(),
                                           stdout=conn.fileno(), stderr=err, env=self._env)
            with self._lock:
                self._served = [p for p in self._served if p.poll() is None] + [process]

    def close(self) -> None:
        # shutdown() wakes the accept() in progress; a close alone would leave it waiting
        # and the port still served.
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(30)
        with self._lock:
            served, self._served = self._served, []
        for process in served:
            stop_process(process)


class GitDaemon:
    """`git daemon` serving every repository below `root` over git://, pushes allowed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self._listener: InetdListener | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitDaemon:
        self.root.mkdir(parents=True, exist_ok=True)
        self._listener = InetdListener(
            [GIT, "daemon", "--inetd", "--export-all", "--enable=receive-pack",
             f"--base-path={self.root}", str(self.root)], env=git_env())
        self.port = self._listener.port
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener.close()


def stop_process(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
