"""What a local run starts from: its work directory, its environment and its secret values.

Secret values are read from `--secrets-dir/<secret>/<key>` (the layout Kubernetes uses when it
mounts a Secret as a folder), registered with the process-wide redactor at once, and only ever
handed to the run through its environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from reconciler.declarations.models import Repository, SecretRef
from reconciler.executors.identity import run_identity
from reconciler.executors.local.checkout import PASSWORD_VAR, SSH_KEY_VAR, USERNAME_VAR, is_ssh_url
from reconciler.redact import redactor
from reconciler.runs import RunRequest

DEFAULT_PATH = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
INHERITED_VARIABLES = ("PATH", "LANG", "LC_ALL")
"""All a run takes from the daemon's environment (see docs/security.md)."""
# Read and execute for all, as the Kubernetes executor mounts them (ConfigMap defaultMode).
_READ_ONLY_FILE = 0o555
_READ_ONLY_DIR = 0o555


class RunSetupError(Exception):
    """A run cannot start. The message is the run's failure message: it names files, secrets
    and keys, never a secret value."""


def read_secret_env(
    secret_env: Mapping[str, SecretRef], secrets_dir: Path | None
) -> dict[str, str]:
    """The value of every `secretEnv` variable, read from `<secrets_dir>/<secret>/<key>`.

    Values are used byte for byte (as Kubernetes does with `secretKeyRef`): a trailing newline
    in the file is part of the value."""
    values: dict[str, str] = {}
    for name, ref in sorted(secret_env.items()):
        values[name] = _read_secret(f"secretEnv {name}", ref.secret, ref.key, secrets_dir)
    redactor.add(*values.values())
    return values


def checkout_credentials(
    repository: Repository, secrets_dir: Path | None
) -> tuple[dict[str, str], str]:
    """The variables that let the checkout authenticate (see `checkout.py`), and the trusted
    SSH host keys. Keys as the Kubernetes executor reads them: `username` (optional) and
    `password` for HTTPS; `ssh-privatekey` and `known_hosts` for SSH."""
    secret = repository.credentials_secret
    if secret is None:
        return {}, ""
    where = "spec.repository.credentialsSecret"
    if is_ssh_url(repository.url):
        key = _read_secret(where, secret, "ssh-privatekey", secrets_dir)
        known_hosts = _read_secret(where, secret, "known_hosts", secrets_dir)
        redactor.add(key)
        return {SSH_KEY_VAR: key}, known_hosts
    password = _read_secret(where, secret, "password", secrets_dir)
    redactor.add(password)
    values = {PASSWORD_VAR: password}
    with contextlib.suppress(_NoSuchKeyError):
        values[USERNAME_VAR] = _read_secret(where, secret, "username", secrets_dir).strip()
    return values, ""


class _NoSuchKeyError(RunSetupError):
    pass


def _read_secret(where: str, secret: str, key: str, secrets_dir: Path | None) -> str:
    where = f"{where}: secret {secret!r}"
    if secrets_dir is None:
        raise RunSetupError(f"{where}, key {key!r}: no --secrets-dir is set to read it from")
    folder = secrets_dir / secret
    path = folder / key
    # Messages reach the status branch: name the file under --secrets-dir, not the host path.
    shown = f"<secrets-dir>/{secret}/{key}"
    if key in (".", ".."):
        raise RunSetupError(f"{where}: {key!r} is not a key")
    if not folder.is_dir():
        raise RunSetupError(f"{where} not found: there is no folder <secrets-dir>/{secret}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _NoSuchKeyError(f"{where} has no key {key!r}: there is no file {shown}") from None
    except OSError as err:
        raise RunSetupError(f"{where}, key {key!r}: cannot read {shown}: {err.strerror}") from None
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RunSetupError(f"{where}, key {key!r}: {shown} is not UTF-8 text") from None
    if "\0" in value:
        raise RunSetupError(
            f"{where}, key {key!r}: {shown} holds a NUL byte, which an environment "
            "variable cannot carry"
        )
    return value


def write_task_files(files: Mapping[str, str], dest: Path) -> None:
    """Write a task's files read-only (and executable, so `./script.sh` works) under `dest`,
    as the Kubernetes executor mounts them."""
    dest.mkdir(parents=True)
    for name, content in sorted(files.items()):
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise RunSetupError(f"files: {name!r} is not a path inside the task's folder")
        path = dest.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise RunSetupError(
                f"files: {name!r} clashes with another file of the task (one name is a "
                "folder of the other)"
            ) from None
        path.chmod(_READ_ONLY_FILE)
    for folder, _, _ in os.walk(dest):
        Path(folder).chmod(_READ_ONLY_DIR)


def remove_tree(path: Path) -> None:
    """Remove a work directory, read-only folders included."""
    if not path.exists():
        return
    for folder, _, _ in os.walk(path):
        Path(folder).chmod(stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)


def run_environment(
    request: RunRequest,
    *,
    base: Mapping[str, str],
    home: Path,
    tmp: Path,
    extra: Mapping[str, str],
    secrets: Mapping[str, str],
) -> dict[str, str]:
    """A small, explicit environment: never the daemon's own, which may hold its Git token,
    its `RECONCILER_*` settings or the path of the secrets dir. Later layers win: base (PATH
    and the locale), HOME and TMPDIR in the work dir, the engine's settings, Defaults' env,
    spec.env, the run's secretEnv, and the run's identity (as on Kubernetes)."""
    entry = request.entry
    return {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        **base,
        "TZ": "UTC",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        **extra,
        **entry.defaults.env,
        **entry.spec.env,
        **secrets,
        **run_identity(request),
    }
