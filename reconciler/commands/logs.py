"""`reconciler logs KIND/NAME`: the whole log of an entry's last run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reconciler.types import EntryId, split_entry_id


def run(args: argparse.Namespace) -> int:
    try:
        kind, name = split_entry_id(args.entry)
    except ValueError as err:
        print(f"reconciler: {err}", file=sys.stderr)
        return 2
    entry = EntryId(f"{kind.prefix}/{name}")
    if args.executor == "kubernetes":
        from reconciler.executors.kubernetes.executor import latest_log

        text: str | None = latest_log(entry, namespace=args.namespace, kubeconfig=args.kubeconfig)
        where = f"namespace {args.namespace}"
    else:
        state_dir = Path(args.state_dir)
        if not state_dir.is_dir():
            print(f"reconciler: --state-dir {state_dir} does not exist; pass the state dir of "
                  "the daemon that ran it", file=sys.stderr)
            return 1
        text = _local_log(entry, state_dir)
        where = f"state dir {state_dir}"
    if text is None:
        print(f"reconciler: no run of {entry} is recorded in {where}", file=sys.stderr)
        return 1
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def _local_log(entry: EntryId, state_dir: Path) -> str | None:
    from reconciler.executors.local.history import RunHistory

    if not state_dir.is_dir():
        return None
    history = RunHistory(state_dir)
    try:
        report = history.latest_run(entry)
        if report is None:
            return None
        header = (f"# {report.run_id}: {report.operation.value} {report.state.value}"
                  f" (attempt {report.attempt}, commit {report.revision[:12]})\n")
        return header + history.logs(report.run_id)
    finally:
        history.close()
