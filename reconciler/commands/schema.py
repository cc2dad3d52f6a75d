"""`reconciler schema --out DIR`: write the JSON Schemas of every declaration kind and of the
Policy file."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.declarations.schema import render, write_schemas
from reconciler.policy.schema import FILE_NAME, policy_schema


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    for path in write_schemas(out):
        print(path)
    policy = out / FILE_NAME
    policy.write_text(render(policy_schema()), encoding="utf-8")
    print(policy)
    return 0
