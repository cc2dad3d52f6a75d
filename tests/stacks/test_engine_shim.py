"""`reconciler-terraform` behaves like the `terraform` binary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

SHIM = [sys.executable, "-m", "reconciler.programs.engine_shim"]


def _env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "empty.tfrc"
    config.write_text("")
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CHECKPOINT_DISABLE": "1",
            "TF_CLI_CONFIG_FILE": str(config), "TF_IN_AUTOMATION": "1"}


def _engine(tmp_path: Path, module: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHIM, *args], cwd=module, env=_env(tmp_path), text=True,
                          capture_output=True, timeout=60, check=False)


def test_version_and_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "reconciler-terraform"
    done = subprocess.run([str(script), "version"], env=_env(tmp_path), text=True,
                          capture_output=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Terraform v1.")


def test_detailed_exit_codes_and_streams(tmp_path: Path) -> None:
    module = tmp_path / "module"
    module.mkdir()
    (module / "main.tf").write_text('resource "terraform_data" "a" {\n  input = "x"\n}\n')
    plan = ["plan", "-input=false", "-no-color", "-detailed-exitcode", "-out=tfplan"]

    assert _engine(tmp_path, module, "init", "-input=false").returncode == 0
    changes = _engine(tmp_path, module, *plan)
    assert changes.returncode == 2, changes.stderr
    assert "1 to add" in changes.stdout
    applied = _engine(tmp_path, module, "apply", "-input=false", "-no-color", "tfplan")
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete!" in applied.stdout
    assert _engine(tmp_path, module, *plan).returncode == 0

    (module / "main.tf").write_text('resource "terraform_data" "a" {\n  inptu = "x"\n}\n')
    broken = _engine(tmp_path, module, *plan)
    assert broken.returncode == 1
    assert 'An argument named "inptu" is not expected here' in broken.stderr
    assert broken.stdout.strip() == ""


def test_the_process_can_write_after_the_engine_returns(tmp_path: Path) -> None:
    # The engine closes the descriptors it is handed; the shim hands it duplicates.
    code = (
        "from reconciler.programs.engine_shim import main\n"
        "first = main(['version'])\n"
        "print('after', first, flush=True)\n"
        "import sys; print('still', file=sys.stderr, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), text=True,
                          capture_output=True, timeout=60, check=False, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("Terraform v")
    assert done.stdout.splitlines()[-1] == "after 0"
    assert done.stderr.strip() == "still"


def test_environment_is_read_as_the_process_started(tmp_path: Path) -> None:
    module = tmp_path / "module"
    module.mkdir()
    (module / "main.tf").write_text('variable "x" {\n  type = string\n}\n'
                                    'output "x" {\n  value = var.x\n}\n')
    env = {**_env(tmp_path), "TF_VAR_x": "from-env"}
    done = subprocess.run([*SHIM, "plan", "-no-color", "-input=false"], cwd=module, env=env,
                          text=True, capture_output=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert '+ x = "from-env"' in done.stdout
