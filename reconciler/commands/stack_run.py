"""`reconciler stack-run OPERATION ...`: the stack runner, as a subcommand of the installed
program (how a runner image without `python -m` access starts it). See `reconciler.stackrun`."""

from __future__ import annotations

import argparse

from reconciler import stackrun


def run(args: argparse.Namespace) -> int:
    return stackrun.main(list(args.runner_args))
