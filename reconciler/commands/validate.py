"""`reconciler validate [DIR] [--policy FILE]`: check the declarations of a folder (a work
tree, in a PR check or a pre-commit hook).

Exit 0 when every declaration is valid, 1 when anything is wrong, 2 when DIR or the policy
file cannot be read. With `--policy`, what the policy denies is wrong too, reported as the
daemon reports it (`path:line:col: field: denied by policy: ...`).

Text output is one line per problem on stdout, `path:line:col: field: message` with
paths as reachable from the current directory, and a summary on stderr. `--format github`
prints the same problems as GitHub Actions annotations (`::error file=…,line=…,col=…::…`).
`--format sarif` prints a SARIF 2.1.0 log for code scanning (see `commands/sarif.py`), and
`--format gitlab` a GitLab Code Quality report (see `commands/codequality.py`).
`--format json` prints a `ValidationReport` (schemas/validation-report.json):

    {"apiVersion": "reconciler.io/v1alpha1", "kind": "ValidationReport", "root": DIR, "valid": bool,
     "summary": {"files": n, "tasks": n, "stacks": n, "invalid": n, "errors": n},
     "entries": [{"id", "kind", "name", "path", "line", "specHash"}],
     "invalid": [{"id", "errors": [ERROR]}],
     "errors": [ERROR]}

where ERROR is {"path", "line", "column", "field", "message", "entry"} and paths are
relative to DIR.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler.commands.codequality import code_quality_report
from reconciler.commands.policyflags import check_from_args
from reconciler.commands.sarif import sarif_log
from reconciler.declarations.directory import DirectorySource
from reconciler.declarations.entries import DesiredState, LoadError
from reconciler.declarations.loader import DeclarationLoader
from reconciler.declarations.reports import ValidationReport
from reconciler.kinds.base import registry
from reconciler.policy.file import PolicyError


def run(args: argparse.Namespace) -> int:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            # A file name that is not UTF-8 (a work tree may hold one) is shown escaped.
            stream.reconfigure(errors="backslashreplace")
    root = Path(args.dir)
    if not root.is_dir():
        print(f"reconciler validate: {root} is not a folder", file=sys.stderr)
        return 2
    try:
        loader = DeclarationLoader(path=args.path)
    except ValueError as err:
        print(f"reconciler validate: --path {err}", file=sys.stderr)
        return 2
    try:
        check = check_from_args(args)
    except PolicyError as err:
        print("\n".join(err.lines), file=sys.stderr)
        return 2
    files = DirectorySource(root)
    desired = loader.load(files)
    if check is not None:
        desired = check.apply(desired, files)
    _print_report(desired, args.format, root)
    return 0 if desired.clean else 1


# The formats that are one JSON document of the problems.
_DOCUMENTS: dict[str, Callable[[Sequence[LoadError], Path], Any]] = {
    "sarif": sarif_log,
    "gitlab": code_quality_report,
}


def _print_report(desired: DesiredState, form: str, root: Path) -> None:
    if form == "json":
        print(json.dumps(report(desired, str(root)), indent=2))
        return
    if form in _DOCUMENTS:
        print(json.dumps(_DOCUMENTS[form](desired.errors, root), indent=2, ensure_ascii=False))
    else:
        line = github_annotation if form == "github" else _shown
        for error in desired.errors:
            print(line(error, root))
    print(summary(desired), file=sys.stderr)


def github_annotation(error: LoadError, root: Path) -> str:
    """`::error file=…,line=…,col=…,title=…::message`: a GitHub Actions workflow command, which
    the pull request shows on the offending line. Values are escaped as the runner reads them
    (`%`, CR, LF, and in properties also `:` and `,`)."""
    path = error.location.path if str(root) in ("", ".") else (root / error.location.path)
    properties = {
        "file": Path(path).as_posix(),
        "line": str(error.location.line),
        "col": str(error.location.column),
        "title": error.field or "reconciler validate",
    }
    shown = ",".join(f"{key}={_escape(value, property_value=True)}"
                     for key, value in properties.items())
    return f"::error {shown}::{_escape(error.message)}"


def _escape(text: str, *, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_value else text


def _shown(error: LoadError, root: Path) -> str:
    if str(root) in ("", "."):
        return str(error)
    located = error.model_copy(
        update={"location": error.location.model_copy(
            update={"path": (root / error.location.path).as_posix()}
        )}
    )
    return str(located)


def _counts(desired: DesiredState) -> dict[str, int]:
    kinds = [e.kind for e in desired.entries.values()]
    return {
        "files": len(desired.files),
        **{kind.plural: kinds.count(kind) for kind in registry()},
        "invalid": len(desired.invalid),
        "errors": len(desired.errors),
    }


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(desired: DesiredState) -> str:
    c = _counts(desired)
    entries = " and ".join(_count(c[kind.plural], kind.prefix) for kind in registry())
    found = f"{entries} in {_count(c['files'], 'file')}"
    if desired.clean:
        return f"valid: {found}"
    invalid = _count(c["invalid"], "entry") if c["invalid"] == 1 else f"{c['invalid']} entries"
    return f"{_count(c['errors'], 'problem')} ({invalid} invalid); valid: {found}"


def report(desired: DesiredState, root: str) -> dict[str, Any]:
    return ValidationReport.of(desired, root=root, summary=_counts(desired)).model_dump(
        mode="json")
