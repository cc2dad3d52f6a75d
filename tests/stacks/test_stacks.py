"""The pure parts of stacks: engine discovery, the runner's command line, backend detection,
plan summaries, engine messages and results."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from reconciler.kinds.stack import launch
from reconciler.kinds.stack.engine import HideOutputValues, engine_error
from reconciler.kinds.stack.launch import (
    EngineNotFoundError,
    check_engine,
    declares_backend,
    find_engine,
    runner_args,
    runner_invocation,
)
from reconciler.kinds.stack.summaries import summarize_plan
from reconciler.runs import PlanChanges, StackResult
from reconciler.types import DriftState, Operation
from tests.stacks.conftest import stack_entry


def _programs(folder: Path, *names: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        program = folder / name
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
    return str(folder)


class TestFindEngine:
    def test_the_declared_engine_comes_first(self, tmp_path: Path) -> None:
        path = _programs(tmp_path / "bin", "tofu", "terraform")

        tofu = find_engine("opentofu", None, search_path=path)
        terraform = find_engine("terraform", None, search_path=path)

        assert (tofu.name, tofu.path, tofu.argv) == (
            "opentofu", str(tmp_path / "bin/tofu"), (str(tmp_path / "bin/tofu"),))
        assert (terraform.name, terraform.path) == ("terraform", str(tmp_path / "bin/terraform"))
        assert not tofu.bundled

    def test_then_the_allowed_fallback(self, tmp_path: Path) -> None:
        path = _programs(tmp_path / "bin", "terraform")

        found = find_engine("opentofu", None, fallback="terraform", search_path=path)

        assert (found.name, found.path) == ("terraform", str(tmp_path / "bin/terraform"))

    def test_the_configured_binary_wins(self, tmp_path: Path) -> None:
        path = _programs(tmp_path / "bin", "terraform")
        custom = _programs(tmp_path / "opt", "tofu-1.10")

        by_path = find_engine("terraform", f"{custom}/tofu-1.10", search_path=path)
        by_name = find_engine("terraform", "terraform", search_path=path)

        assert (by_path.name, by_path.path) == ("opentofu", f"{custom}/tofu-1.10")
        assert by_name.path == str(tmp_path / "bin/terraform")

    def test_a_missing_configured_binary_is_an_error_not_a_fallback(self, tmp_path: Path) -> None:
        path = _programs(tmp_path / "bin", "tofu")

        with pytest.raises(EngineNotFoundError, match="--tofu-bin 'tofu-9' is not"):
            find_engine("opentofu", "tofu-9", search_path=path)

    def test_never_the_other_engine_unasked(self, tmp_path: Path) -> None:
        path = _programs(tmp_path / "bin", "terraform")

        with pytest.raises(EngineNotFoundError) as raised:
            find_engine("opentofu", None, search_path=path)

        assert str(raised.value).startswith(
            "engine opentofu is not installed (no `tofu` on PATH); install OpenTofu")
        assert str(raised.value).endswith(
            "or allow terraform instead with --engine-fallback terraform "
            "(RECONCILER_ENGINE_FALLBACK)")
        assert raised.value.searched == path

    def test_a_missing_fallback_is_named_too(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(launch, "_bundled", lambda search_path: None)  # a machine without it

        with pytest.raises(EngineNotFoundError, match=(
            r"^engine terraform is not installed \(no `terraform` on PATH and no bundled "
            r"reconciler-terraform\), nor is the fallback opentofu that --engine-fallback "
            r"allows \(no `tofu` on PATH\); install Terraform")):
            find_engine("terraform", None, fallback="opentofu", search_path=str(tmp_path))

    def test_the_bundled_engine_is_terraform_itself(self, tmp_path: Path) -> None:
        found = find_engine("terraform", None, search_path=str(tmp_path))

        assert (found.name, found.bundled) == ("terraform", True)

    def test_the_bundled_engine_when_nothing_is_installed(self, tmp_path: Path) -> None:
        found = find_engine("opentofu", None, fallback="terraform", search_path=str(tmp_path))

        assert found.bundled
        assert found.name == "terraform"
        assert found.argv == (str(Path(sys.executable).parent / "reconciler-terraform"),)


class TestCheckEngine:
    """What the engine answers to `version` decides, not the name of its program."""

    def test_the_declared_engine_runs_without_a_word(self) -> None:
        assert check_engine("opentofu", "opentofu", "1.11.8", program="tofu", fallback=None,
                            configured=None) is None

    def test_a_tofu_that_is_terraform_is_refused(self) -> None:
        with pytest.raises(EngineNotFoundError, match=(
            r"^engine opentofu is declared, but `tofu` on PATH is terraform 1.11.4; install "
            r"OpenTofu, or allow terraform with --engine-fallback terraform")):
            check_engine("opentofu", "terraform", "1.11.4", program="tofu", fallback=None,
                         configured=None)

    def test_the_allowed_fallback_is_announced(self) -> None:
        notice = check_engine("terraform", "opentofu", "1.11.8", program="tofu",
                              fallback="opentofu", configured=None)

        assert notice == ("engine terraform is not installed; using opentofu 1.11.8 as "
                          "allowed by --engine-fallback")


class TestRunnerCommandLine:
    def test_every_setting_of_the_stack_is_passed(self, tmp_path: Path) -> None:
        entry = stack_entry(
            engine="terraform", vars={"region": "eu-west-1", "sizes": [1, 2]},
            varFiles=["prod.tfvars", "extra.tfvars.json"], lockTimeout="1m30s", apply="plan",
            secretEnv={"TF_VAR_token": {"secret": "api", "key": "token"},
                       "AWS_SECRET_ACCESS_KEY": {"secret": "aws", "key": "secret"}},
        )

        args = runner_args(entry, Operation.APPLY, state_dir=tmp_path / "state",
                           engine_bin="/opt/tofu")

        assert args == (
            "apply", "--stack", "web", "--engine", "terraform",
            "--state-dir", str(tmp_path / "state"), "--engine-bin", "/opt/tofu",
            "--vars", '{"region":"eu-west-1","sizes":[1,2]}',
            "--var-file", "prod.tfvars", "--var-file", "extra.tfvars.json",
            "--secret-env", "AWS_SECRET_ACCESS_KEY", "--secret-env", "TF_VAR_token",
            "--lock-timeout", "90", "--plan-only",
        )

    def test_the_invocation_runs_the_runner_in_the_stack_path(self, tmp_path: Path) -> None:
        entry = stack_entry(path="infra/web")

        invocation = runner_invocation(entry, Operation.DRIFT, state_dir=Path("rel/state"),
                                       engine_bin=None)

        assert invocation.argv[:3] == (sys.executable, "-m", "reconciler.programs.stack_runner")
        assert invocation.argv[3:5] == ("drift", "--stack")
        state_dir = invocation.argv[invocation.argv.index("--state-dir") + 1]
        assert Path(state_dir).is_absolute(), "the runner runs in another folder"
        assert invocation.workdir == "infra/web"
        assert invocation.env == {"PYTHONUNBUFFERED": "1"}

    def test_a_relative_engine_path_is_made_absolute(self, tmp_path: Path) -> None:
        by_path = runner_args(stack_entry(), Operation.PLAN, state_dir=tmp_path,
                              engine_bin="bin/tofu")
        by_name = runner_args(stack_entry(), Operation.PLAN, state_dir=tmp_path,
                              engine_bin="tofu")

        assert by_path[by_path.index("--engine-bin") + 1] == str(Path.cwd() / "bin/tofu")
        assert by_name[by_name.index("--engine-bin") + 1] == "tofu"

    def test_the_fallback_reaches_the_runner(self, tmp_path: Path) -> None:
        args = runner_args(stack_entry(), Operation.PLAN, state_dir=tmp_path, engine_bin=None,
                           engine_fallback="terraform")

        assert args[args.index("--engine-fallback") + 1] == "terraform"
        assert "--engine-fallback" not in runner_args(
            stack_entry(), Operation.PLAN, state_dir=tmp_path, engine_bin=None)

    def test_a_stack_cannot_run_a_task_operation(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="stack/web: a stack cannot run"):
            runner_args(stack_entry(), Operation.RUN, state_dir=tmp_path, engine_bin=None)


class TestDeclaresBackend:
    @pytest.mark.parametrize(("name", "text", "expected"), [
        ("main.tf", 'resource "terraform_data" "a" {}\n', False),
        ("main.tf", 'terraform {\n  backend "s3" {\n    bucket = "b"\n  }\n}\n', True),
        ("versions.tf", 'terraform {\n  cloud {\n    organization = "o"\n  }\n}\n', True),
        ("main.tf", 'terraform {\n  # backend "s3" {\n  // backend "gcs" {\n}\n', False),
        ("main.tf", 'terraform {\n/*\n  backend "s3" {\n  }\n*/\n}\n', False),
        ("backend.tf.json", '{"terraform": {"backend": {"local": {"path": "x"}}}}', True),
        ("backend.tf.json", '{"terraform": [{"cloud": {}}]}', True),
        ("main.tf.json", '{"resource": {}}', False),
        ("broken.tf.json", "{not json", False),
        ("notes.md", 'backend "s3" {\n', False),
    ])
    def test_backend_blocks(self, tmp_path: Path, name: str, text: str, expected: bool) -> None:
        (tmp_path / name).write_text(text)

        assert declares_backend(tmp_path) is expected

    def test_a_long_run_of_blank_lines_is_read_in_linear_time(self, tmp_path: Path) -> None:
        """A module is the repository's, so anyone who can push writes it: 200,000 blank lines
        took hours to search when the search restarted at every one of them."""
        (tmp_path / "main.tf").write_text("\n" * 200_000 + 'terraform {\n  backend "s3" {}\n}\n')
        began = time.monotonic()
        assert declares_backend(tmp_path) is True
        assert time.monotonic() - began < 30  # linear: milliseconds; quadratic: hours


def _change(address: str, *actions: str, mode: str = "managed") -> dict[str, object]:
    return {"address": address, "mode": mode, "change": {"actions": list(actions)}}


def test_plan_summary_counts_like_the_engine() -> None:
    plan = {
        "resource_changes": [
            _change("terraform_data.new", "create"),
            _change("terraform_data.edit", "update"),
            _change("terraform_data.swap", "delete", "create"),
            _change("terraform_data.gone", "delete"),
            _change("terraform_data.same", "no-op"),
            _change("data.http.read", "read", mode="data"),
            _change("module.m.terraform_data.x[0]", "create", "delete"),
        ],
        "output_changes": {
            "kept": {"actions": ["update"], "after": "value-not-reported"},
            "dropped": {"actions": ["delete"]},
        },
        "variables": {"password": {"value": "never-read"}},
    }

    summary = summarize_plan(plan)

    assert summary.changes == PlanChanges(add=3, change=1, destroy=3)
    assert str(summary.changes) == "3 to add, 1 to change, 3 to destroy"
    assert summary.addresses == (
        "module.m.terraform_data.x[0]", "terraform_data.edit", "terraform_data.gone",
        "terraform_data.new", "terraform_data.swap",
    )
    assert summary.outputs == ("kept",)
    assert "value-not-reported" not in summary.model_dump_json()
    assert summarize_plan({}).changes.total == 0


INIT_FAILURE = """\

Error: Terraform encountered problems during initialisation, including problems
with the configuration, described below.

The Terraform configuration must be valid before initialization so that
Terraform can determine which modules and providers need to be installed.


Error: Invalid expression

  on main.tf line 2, in resource "terraform_data" "a":
   2:   input =
   3: }

Expected the start of an expression, but found an invalid expression token.
"""


class TestEngineError:
    def test_the_located_error_leads(self) -> None:
        lines = engine_error(INIT_FAILURE).splitlines()

        assert lines[0] == (
            "Invalid expression (main.tf line 2): Expected the start of an expression, but "
            "found an invalid expression token."
        )
        assert lines[1].startswith(
            "Terraform encountered problems during initialisation, including problems with "
            "the configuration, described below.: The Terraform configuration must be valid"
        )

    def test_without_error_blocks_the_last_lines(self) -> None:
        assert engine_error("loading\nsomething broke\nbadly\n") == (
            "loading something broke badly")

    def test_long_messages_are_clipped(self) -> None:
        message = engine_error("Error: " + "x" * 5000)

        assert len(message) == 1000
        assert message.endswith("…")


def test_output_values_are_hidden_and_names_kept() -> None:
    engine_output = """\
Plan: 1 to add, 0 to change, 0 to destroy.

Changes to Outputs:
  + endpoint = "https://db.internal:5432"
  ~ shape    = {
      ~ nested = "old-value" -> "new-value"
    }
  - gone     = "bye" -> null
$ next command
terraform_data.a: Creation complete after 0s [id=1]

Apply complete! Resources: 1 added, 0 changed, 0 destroyed.

Outputs:

endpoint = "https://db.internal:5432"
shape = {
  "nested" = "new-value"
}
"""
    hide = HideOutputValues()

    shown = [line for line in map(hide, engine_output.splitlines()) if line is not None]

    assert shown == [
        "Plan: 1 to add, 0 to change, 0 to destroy.",
        "",
        "Changes to Outputs:",
        "  + endpoint",
        "  ~ shape",
        "  - gone",
        "$ next command",
        "terraform_data.a: Creation complete after 0s [id=1]",
        "",
        "Apply complete! Resources: 1 added, 0 changed, 0 destroyed.",
        "",
        "Outputs: (values are not written to run logs)",
    ]


class TestStackResult:
    def test_round_trip_through_the_result_line(self) -> None:
        result = StackResult(
            engine="opentofu", version="1.10.6", operation=Operation.DRIFT,
            changes=PlanChanges(change=2), addresses=("a.b", "c.d"),
            drift=DriftState.DRIFTED,
        )

        data = json.loads(json.dumps(result.to_result()))

        assert data == {
            "engine": "opentofu", "version": "1.10.6", "operation": "drift",
            "changes": {"add": 0, "change": 2, "destroy": 0}, "addresses": ["a.b", "c.d"],
            "drift": "Drifted", "applied": False,
        }
        assert StackResult.from_result(data) == result

    def test_what_is_not_a_result(self) -> None:
        assert StackResult.from_result({}) is None
        assert StackResult.from_result({"operation": "apply", "drift": "Sideways"}) is None

    def test_keys_of_a_newer_runner_are_ignored(self) -> None:
        typed = StackResult.from_result(
            {"operation": "apply", "applied": True, "costEstimate": 12.5}
        )

        assert typed is not None
        assert typed.applied
