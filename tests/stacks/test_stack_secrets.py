"""Where a stack's secrets end up on this machine: its state (plain, as the engine writes it)
readable by the daemon's user alone, and its run log masked however the engine quotes them."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from reconciler.kinds.stack.launch import stack_dir
from reconciler.types import Operation
from tests.stacks.conftest import SECRET_MODULE, Stacks, stack_entry

pytestmark = pytest.mark.engine

SECRET = 'QUOTE"ZQX\\WVK-${x}-tf'


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for folder, folders, files in os.walk(root):
        for name in [*folders, *files]:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_stack_state_and_its_backup_are_private(stacks: Stacks) -> None:
    stacks.write("stacks/web", {"main.tf": SECRET_MODULE})
    stacks.secrets["TF_VAR_token"] = SECRET
    secret_env = {"TF_VAR_token": {"secret": "api", "key": "token"}}
    # Left readable by an earlier version: tightened by the next run.
    old = stack_dir(stacks.state_dir, "web")
    old.mkdir(parents=True, mode=0o755)
    (old / "notes.txt").write_text("left behind\n")
    (old / "notes.txt").chmod(0o644)

    for x in ("one", "two"):  # the second apply makes the state's backup
        done = stacks.run(stack_entry(vars={"x": x}, secretEnv=secret_env), Operation.APPLY)
        assert done.code == 0, done.log

    folder = stack_dir(stacks.state_dir, "web")
    found = modes(folder)
    assert {"terraform.tfstate", "terraform.tfstate.backup", "run.lock"} <= set(found)
    assert SECRET in (folder / "terraform.tfstate").read_text().replace('\\"', '"').replace(
        "\\\\", "\\")  # the engine keeps it in plain text: hence the modes
    assert {path: mode for path, mode in found.items() if mode & 0o077} == {}
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
    dot_terraform = modes(stacks.repo / "stacks/web/.terraform")
    assert {path: mode for path, mode in dot_terraform.items() if mode & 0o077} == {}


def test_terraform_quoted_secret_is_masked_in_the_run_log(stacks: Stacks) -> None:
    stacks.write("stacks/web", {"main.tf": SECRET_MODULE})
    stacks.secrets["TF_VAR_token"] = SECRET
    entry = stack_entry(vars={"x": "one"},
                        secretEnv={"TF_VAR_token": {"secret": "api", "key": "token"}})

    done = stacks.run(entry, Operation.PLAN)

    assert done.code == 0, done.log
    # How the plan shows terraform_data.token: quoted and escaped, and masked inside quotes.
    assert re.search(r'^ +\+ input +?= "\*\*\*\*"$', done.log, re.MULTILINE), done.log
    assert "ZQX" not in done.log
    assert "WVK" not in done.log
