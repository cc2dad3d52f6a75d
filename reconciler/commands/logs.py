"""`reconciler logs KIND/NAME`: the whole log of an entry's last run."""

from __future__ import annotations

import argparse
import sys

from reconciler.executors import registry
from reconciler.executors.registry import ExecutorConfigError
from reconciler.types import EntryId, split_entry_id


def run(args: argparse.Namespace) -> int:
    try:
        kind, name = split_entry_id(args.entry)
    except ValueError as err:
        print(f"reconciler: {err}", file=sys.stderr)
        return 2
    entry = EntryId(f"{kind.prefix}/{name}")
    try:
        found = registry.adapter(args.executor).latest_log(entry, args)
    except ExecutorConfigError as err:
        print(f"reconciler: {err}", file=sys.stderr)
        return 1
    text = found.text
    if text is None:
        print(f"reconciler: no run of {entry} is recorded in {found.where}", file=sys.stderr)
        return 1
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0
