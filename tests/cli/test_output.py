"""Output of the read-only commands as shells and pipes consume it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
