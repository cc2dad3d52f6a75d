"""`reconciler status`: the status table, read from the status branch."""

from __future__ import annotations

import argparse
import json
import sys

from reconciler import status as status_files
from reconciler.source.errors import SourceError
from reconciler.source.gitsource import read_status_files


def run(args: argparse.Namespace) -> int:
    try:
        files = read_status_files(args.repo, args.status_branch)
    except SourceError as err:
        print(f"reconciler: {err}", file=sys.stderr)
        return 1
    records, problems = status_files.parse(files)
    for problem in problems:
        print(f"reconciler: {problem}", file=sys.stderr)
    if args.format == "json":
        data = [r.model_dump(mode="json", exclude_none=True) for r in records.values()]
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    rows = [("ENTRY", "PHASE", "DRIFT", "LAST RUN", "FINISHED", "MESSAGE")]
    for record in sorted(records.values(), key=lambda r: r.entry):
        run_ = record.last_run
        finished = ""
        if run_ is not None and run_.finished_at is not None:
            finished = run_.finished_at.strftime("%Y-%m-%d %H:%M:%S")
        rows.append((record.entry, record.phase.value, status_files.drift_summary(record),
                     run_.id if run_ else "", finished, status_files.shorten(record.message, 80)))
    last = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(last)]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:last])]
        print("  ".join(cells) + "  " + row[last])
    errors = files.get(status_files.ERRORS)
    if errors and b"errors: []" not in errors:
        print("\nload errors: see status/errors.yaml", file=sys.stderr)
    refused = status_files.refusal_text(files)
    if refused:
        print(f"\nrefused: {refused}", file=sys.stderr)
    return 0
