"""A `reconciler` command run in-process, as `main` runs it: its exit code and output."""

from __future__ import annotations

import pytest

from reconciler.cli import main


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, out, err
