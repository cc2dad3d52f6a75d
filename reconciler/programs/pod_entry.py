"""The entry point of a stack pod: `python3 -m reconciler.programs.pod_entry --state-secret S
--state-lease L --state-file FILE -- RUNNER-ARGS`.

The Kubernetes executor makes it the command of every stack pod
(`executors/kubernetes/manifests.STACK_ENTRY_MODULE`); what it does, keeping the stack's state
in its Secret around the stack runner, is `executors/kubernetes/stackstate.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from reconciler.executors.kubernetes.stackstate import run_stack_pod


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m reconciler.programs.pod_entry",
        description="Run the stack runner with the stack's state kept in its Secret.",
    )
    parser.add_argument("--state-secret", required=True, help="The Secret holding the state.")
    parser.add_argument("--state-lease", required=True, help="The Lease locking it.")
    parser.add_argument("--state-file", required=True, type=Path,
                        help="The local state file the runner's backend reads and writes.")
    parser.add_argument(
        "--namespace", default=None,
        help="Namespace of the Secret and the Lease (default: $RECONCILER_NAMESPACE).",
    )
    parser.add_argument("runner_args", nargs=argparse.REMAINDER, help="-- then runner args.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runner = list(args.runner_args)
    if runner[:1] == ["--"]:
        runner = runner[1:]
    namespace = args.namespace or os.environ.get("RECONCILER_NAMESPACE")
    if not namespace:
        print("stackstate: the run's namespace is unknown (--namespace)", file=sys.stderr)
        return 2
    return run_stack_pod(args, namespace, runner)


if __name__ == "__main__":
    raise SystemExit(main())
