"""The stack runner program: one stack operation in the module folder it is started in.

    python -m reconciler.programs.stack_runner OPERATION --stack NAME --engine opentofu \
        --state-dir DIR ...

(or `reconciler stack-run ...` where `python -m` is not at hand). What it does is
`kinds.stack.runner`; this is the process's side: its arguments, stdout, folder and environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from reconciler.kinds.stack import runner


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return runner.run(args, out=sys.stdout, workdir=Path.cwd(), environ=os.environ)


if __name__ == "__main__":
    raise SystemExit(main())
