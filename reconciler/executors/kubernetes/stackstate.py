"""The entry point of a stack pod: durable state for a module without a backend, then the runner.

A pod's filesystem is gone when its run ends, so a module that declares no backend cannot keep
its state where the local executor keeps it (the state dir). Before the stack runner starts,
this writes `reconciler_backend.tf.json` beside the module, selecting the engine's own
`kubernetes` backend: the state lives in the Secret `tfstate-default-<suffix>` of the run's
namespace, locked by a Lease named after it, both labelled as ours. The runner pod's service
account therefore needs get/list/create/update/delete on `secrets` and `leases` in that
namespace (the daemon's does not: it never reads a Secret). A module with a backend of its own
(S3, GCS, HCP Terraform, ...) is left exactly as it is.

    python3 -m reconciler.executors.kubernetes.stackstate --state-suffix S -- RUNNER-ARGS
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler.executors.kubernetes.labels import MANAGED_BY, MANAGER
from reconciler.stacks import declares_backend

BACKEND_FILE = "reconciler_backend.tf.json"
RUNNER_MODULE = "reconciler.stackrun"


def backend_document(*, namespace: str, suffix: str) -> dict[str, Any]:
    return {
        "terraform": {
            "backend": {
                "kubernetes": {
                    "secret_suffix": suffix,
                    "namespace": namespace,
                    "in_cluster_config": True,
                    "labels": {MANAGED_BY: MANAGER, "reconciler.io/stack-state": suffix},
                }
            }
        }
    }


def prepare(module: Path, *, namespace: str, suffix: str) -> bool:
    """Write the backend file unless the module has a backend; True when it was written."""
    if declares_backend(module):
        return False
    document = backend_document(namespace=namespace, suffix=suffix)
    (module / BACKEND_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m reconciler.executors.kubernetes.stackstate",
        description="Give a stack without a backend the kubernetes backend, then run it.",
    )
    parser.add_argument("--state-suffix", required=True, help="Suffix of the state Secret.")
    parser.add_argument(
        "--namespace", default=None,
        help="Namespace of the state Secret (default: $RECONCILER_NAMESPACE).",
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
    if prepare(Path.cwd(), namespace=namespace, suffix=args.state_suffix):
        print(
            f"state: kubernetes backend, Secret tfstate-default-{args.state_suffix} "
            f"in namespace {namespace}",
            flush=True,
        )
    # Replace this process: the runner gets the pod's signals and its exit code is the pod's.
    os.execv(sys.executable, [sys.executable, "-m", RUNNER_MODULE, *runner])  # noqa: S606
    return 0  # not reached: execv replaces the process


if __name__ == "__main__":
    raise SystemExit(main())
