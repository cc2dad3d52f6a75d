"""`reconciler validate --format sarif`: the problems as a SARIF 2.1.0 log, the format code
scanning services read (GitHub's `upload-sarif`, GitLab and Azure DevOps importers).

Pure: a list of problems in, one JSON document out. Every problem is a result of one rule
(the loader's problems carry no code of their own to tell kinds apart), at `error` level,
located by a URI relative to the base id `%SRCROOT%`: the folder the job ran in, which in a
CI job is the repository's root. No absolute path of the machine is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from reconciler import __version__
from reconciler.declarations.entries import LoadError

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
RULE_ID = "reconciler/declaration"
_RULE: dict[str, Any] = {
    "id": RULE_ID,
    "name": "InvalidDeclaration",
    "shortDescription": {"text": "A declaration the reconciler cannot run as written."},
    "fullDescription": {"text": (
        "A Task, Stack or Defaults declaration that does not load (YAML syntax, unknown or "
        "misspelled field, wrong value, broken reference) or that the operator's policy "
        "denies. The reconciler does not run the entry until it is fixed.")},
    "defaultConfiguration": {"level": "error"},
    "help": {"text": "Run `reconciler validate` locally for the same problems as text."},
}


def sarif_log(errors: Sequence[LoadError], root: Path) -> dict[str, Any]:
    """The SARIF log of `errors`, whose paths are relative to `root` (the folder validated)."""
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "reconciler",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": [_RULE],
            }},
            "originalUriBaseIds": {SRCROOT: {"description": {
                "text": "The folder `reconciler validate` ran in: the repository's root."}}},
            "columnKind": "unicodeCodePoints",
            "results": [_result(error, root) for error in errors],
        }],
    }


def _result(error: LoadError, root: Path) -> dict[str, Any]:
    field = f"{error.field}: " if error.field else ""
    properties = {k: v for k, v in (("field", error.field), ("entry", error.entry)) if v}
    result: dict[str, Any] = {
        "ruleId": RULE_ID,
        "ruleIndex": 0,
        "level": "error",
        "message": {"text": f"{field}{error.message}"},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": uri(error.location.path, root), "uriBaseId": SRCROOT},
            # SARIF lines and columns start at 1, as the loader's do; never 0.
            "region": {"startLine": max(error.location.line, 1),
                       "startColumn": max(error.location.column, 1)},
        }}],
    }
    if properties:
        result["properties"] = properties
    return result


def uri(path: str, root: Path) -> str:
    """`path` (relative to `root`) as a URI reference relative to the current folder (see
    `from_here`); characters a URI cannot hold are percent-encoded."""
    return quote(from_here(path, root), safe="/")


def from_here(path: str, root: Path) -> str:
    """`path` (relative to `root`) as a POSIX path relative to the current folder, which in a
    CI job is the repository's root: DIR is prefixed when it is a relative folder below it,
    as `--format github` does."""
    joined = PurePosixPath(Path(path).as_posix())
    if not root.is_absolute() and ".." not in root.parts and str(root) not in ("", "."):
        joined = PurePosixPath(root.as_posix()) / joined
    elif root.is_absolute():
        # Outside the current folder, relative to DIR is the best there is.
        with suppress(ValueError):
            joined = PurePosixPath((root / path).relative_to(Path.cwd()).as_posix())
    return str(joined)
