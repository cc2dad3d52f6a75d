"""What a local run starts from: its work directory, its environment and its secret values.

Secret values are read from `--secrets-dir/<secret>/<key>` (the layout Kubernetes uses when it
mounts a Secret as a folder), registered with the process-wide redactor at once, and only ever
handed to the run through its environment.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from reconciler.declarations.models import SecretRef
from reconciler.executors.base import RunRequest
from reconciler.redact import redactor

DEFAULT_PATH = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
_READ_ONLY_FILE = 0o444
_READ_ONLY_PROGRAM = 0o555
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
        values[name] = _read_secret(name, ref, secrets_dir)
    redactor.add(*values.values())
    return values


def _read_secret(name: str, ref: SecretRef, secrets_dir: Path | None) -> str:
    where = f"secretEnv {name}: secret {ref.secret!r}"
    if secrets_dir is None:
        raise RunSetupError(f"{where}, key {ref.key!r}: no --secrets-dir is set to read it from")
    folder = secrets_dir / ref.secret
    path = folder / ref.key
    if ref.key in (".", ".."):
        raise RunSetupError(f"{where}: {ref.key!r} is not a key")
    if not folder.is_dir():
        raise RunSetupError(f"{where} not found: there is no folder {folder}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunSetupError(
            f"{where} has no key {ref.key!r}: there is no file {path}"
        ) from None
    except OSError as err:
        raise RunSetupError(
            f"{where}, key {ref.key!r}: cannot read {path}: {err.strerror}"
        ) from None
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RunSetupError(f"{where}, key {ref.key!r}: {path} is not UTF-8 text") from None
    if "\0" in value:
        raise RunSetupError(
            f"{where}, key {ref.key!r}: {path} holds a NUL byte, which an environment "
            "variable cannot carry"
        )
    return value


def write_task_files(files: Mapping[str, str], dest: Path) -> None:
    """Write a task's files read-only under `dest`, as the Kubernetes executor mounts them.
    A file starting with `#!` is also executable, so `./script.sh` works."""
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
        path.chmod(_READ_ONLY_PROGRAM if content.startswith("#!") else _READ_ONLY_FILE)
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
    """A small, explicit environment: never the daemon's own, which may hold its Git token.
    Later layers win: base, the run's identity, the engine's settings, spec.env, secretEnv."""
    entry = request.entry
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        **base,
        "TZ": "UTC",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "RECONCILER_RUN_ID": request.run_id,
        "RECONCILER_ENTRY": entry.id,
        "RECONCILER_OPERATION": request.operation.value,
        "RECONCILER_TRIGGER": request.trigger.value,
        "RECONCILER_ATTEMPT": str(request.attempt),
        "RECONCILER_REVISION": request.revision,
        "RECONCILER_SPEC_HASH": entry.spec_hash,
    }
    env.update(extra)
    env.update(entry.spec.env)
    env.update(secrets)
    return env
