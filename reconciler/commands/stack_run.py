"""`reconciler stack-run OPERATION ...`: the stack runner, as a subcommand of the installed
program (how a runner image without `python -m` access starts it). See
`reconciler.programs.stack_runner`."""

from __future__ import annotations

import argparse

from reconciler.programs import stack_runner


def run(args: argparse.Namespace) -> int:
    return stack_runner.main(list(args.runner_args))
