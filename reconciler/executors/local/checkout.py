"""A Task's `repository`, cloned by the local run's supervisor before the command starts.

The local counterpart of the Kubernetes executor's clone init container: fetch only the wanted
ref (`--depth 1`), fall back to every branch and tag when the server will not serve a commit by
id, and check the commit out detached into the run's workspace folder.

Credentials reach git through environment variables only, and never the task's command: HTTPS
`username`/`password` through a credential helper that reads them from the environment, an SSH
`ssh-privatekey` through a private ssh-agent fed on its standard input. Neither is written to a
file. SSH host keys are checked strictly against the secret's `known_hosts`.

Only the standard library is used: this runs inside the supervisor.
"""

from __future__ import annotations

import ctypes
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import urlsplit, urlunsplit

USERNAME_VAR = "RECONCILER_GIT_USERNAME"
PASSWORD_VAR = "RECONCILER_GIT_PASSWORD"  # noqa: S105 - a variable's name, not a value
SSH_KEY_VAR = "RECONCILER_GIT_SSH_KEY"
CREDENTIAL_VARS = (USERNAME_VAR, PASSWORD_VAR, SSH_KEY_VAR)

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'echo "username=${{{USERNAME_VAR}:-git}}"; echo "password=${PASSWORD_VAR}"; }}; f'
)
_AGENT_START_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1
# A socket path must fit in 108 bytes: the run's own TMPDIR may be too deep. The folder made
# in it is private (0700) and removed with the agent.
_SOCKET_DIR = "/tmp"  # noqa: S108

Step = Callable[[Sequence[str], Mapping[str, str]], tuple[int, str]]
"""Runs one command under the supervisor: (exit code, how it ended)."""


@dataclass(frozen=True)
class CheckoutSpec:
    url: str
    ref: str
    dest: str
    known_hosts: str = ""
    """Trusted SSH host keys (public, so part of the run's description)."""


def is_ssh_url(url: str) -> bool:
    return url.startswith("ssh://") or bool(_SCP_LIKE.match(url))


def describe_url(url: str) -> str:
    """The URL without a password in it, for messages."""
    parts = urlsplit(url)
    if parts.password is None or parts.hostname is None:
        return url
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def checkout(
    spec: CheckoutSpec, *, env: Mapping[str, str], step: Step, stopped: Callable[[], bool],
    note: Callable[[str], None], scratch: Path,
) -> str | None:
    """Clone into `spec.dest`. None when done; otherwise why it failed."""
    git_env = {**env, "GIT_TERMINAL_PROMPT": "0", "HOME": str(scratch)}
    if git_env.get(PASSWORD_VAR):
        git_env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="credential.helper",
                       GIT_CONFIG_VALUE_0=_CREDENTIAL_HELPER)
    with _ssh(spec, git_env, scratch) as failure:
        if failure is not None:
            return failure
        return _clone(spec, git_env, step, stopped, note)


def _clone(
    spec: CheckoutSpec, env: Mapping[str, str], step: Step, stopped: Callable[[], bool],
    note: Callable[[str], None],
) -> str | None:
    def git(*args: str) -> tuple[bool, str]:
        code, how = step(["git", *args], env)
        return code == 0 and not stopped(), how

    for args in (("init", "-q", "."), ("remote", "add", "origin", spec.url)):
        ok, how = git(*args)
        if not ok:
            return _failed(spec, how)
    target = "FETCH_HEAD"
    ok, how = git("fetch", "-q", "--depth", "1", "origin", spec.ref)
    if stopped():
        return how
    if not ok:
        note(f"fetching {spec.ref!r} alone failed; fetching every branch and tag")
        ok, how = git("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
        if not ok:
            return _failed(spec, how)
        is_branch, _ = git("rev-parse", "-q", "--verify", f"refs/remotes/origin/{spec.ref}")
        target = f"origin/{spec.ref}" if is_branch else spec.ref
    ok, how = git("checkout", "-q", "--detach", target)
    if not ok:
        return _failed(spec, how)
    git("log", "-1", "--format=checked out %H")
    return None


def _failed(spec: CheckoutSpec, how: str) -> str:
    return f"could not check out {describe_url(spec.url)} at {spec.ref!r}: git {how}"


@contextmanager
def _ssh(spec: CheckoutSpec, env: dict[str, str], scratch: Path) -> Iterator[str | None]:
    """For an SSH URL: strict host key checking, and the key (if any) in a private agent."""
    if not is_ssh_url(spec.url):
        yield None
        return
    known_hosts = scratch / "known_hosts"
    known_hosts.write_text(spec.known_hosts)
    env["GIT_SSH_COMMAND"] = (
        f"ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts}"
    )
    key = env.pop(SSH_KEY_VAR, "")
    if not key:
        yield None
        return
    with TemporaryDirectory(prefix="reconciler-agent-", dir=_SOCKET_DIR) as folder:
        socket = Path(folder) / "agent.sock"
        agent = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        try:
            yield _load_key(key, env, socket, agent)
        finally:
            agent.kill()
            agent.wait()


def _die_with_parent() -> None:
    """The agent holds the key: it must not outlive the supervisor, however that ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _load_key(
    key: str, env: dict[str, str], socket: Path, agent: subprocess.Popen[bytes]
) -> str | None:
    """Give the agent the key; None when the checkout can use it."""
    deadline = time.monotonic() + _AGENT_START_SECONDS
    while not socket.exists() and agent.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if not socket.exists():
        return "ssh-agent did not start, so the repository's SSH key cannot be used"
    env["SSH_AUTH_SOCK"] = str(socket)
    added = subprocess.run(
        # A key whose file lost its final newline is still a key.
        ["ssh-add", "-q", "-"], input=key.rstrip("\n").encode() + b"\n", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
    )
    if added.returncode != 0:
        return "the SSH key of the repository's credentials could not be used: " + (
            added.stdout.decode(errors="replace").strip() or f"exit code {added.returncode}"
        )
    return None
