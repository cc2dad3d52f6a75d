"""Output of the read-only commands as shells and pipes consume it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reconciler import __version__
from tests.e2e.harness import task_yaml


def test_a_closed_pipe_ends_render_quietly(tmp_path: Path) -> None:
    """`reconciler render … | head -1`: the reader leaves before the output ends (here far
    more than a pipe holds, so the write must fail); no traceback follows."""
    declaration = task_yaml("big", ["cat", "/task/data.txt"], image="busybox:1.36",
                            files={"data.txt": "x" * 400_000})
    (tmp_path / "big.yaml").write_text(declaration)
    command = [sys.executable, "-m", "reconciler", "render", "task/big", "--repo", str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.read(20)
        process.stdout.close()
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=120)
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert code == 141


def _reconciler(*args: str) -> subprocess.CompletedProcess[str]:
    # Wide enough that argparse wraps no help text inside a value.
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, check=False, env=env)


def test_help_lists_only_the_commands_people_use_and_the_version() -> None:
    top = _reconciler("--help")
    assert top.returncode == 0
    assert "SUPPRESS" not in top.stdout
    assert "stack-run" not in top.stdout
    version = _reconciler("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"reconciler {__version__}"


def test_run_help_shows_every_default() -> None:
    text = " ".join(_reconciler("run", "--help").stdout.split())
    for shown in ("(default: .reconciler)", "(default: 30s)", "(default: main)",
                  "(default: reconciler-status)", "(default: 127.0.0.1:9100)"):
        assert shown in text
