"""`reconciler schema --out DIR`: write the JSON Schemas of every declaration kind."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.declarations.schema import write_schemas


def run(args: argparse.Namespace) -> int:
    for path in write_schemas(Path(args.out)):
        print(path)
    return 0
