"""`reconciler validate --format gitlab`: the problems as a GitLab Code Quality report, which
a merge request shows in its widget and on the changed lines (`artifacts: reports:
codequality:` in the job).

Pure: a list of problems in, one JSON array out, one issue per problem with the fields GitLab
documents: `description`, `check_name`, `fingerprint`, `severity` and `location` (`path`
relative to the repository's root, `lines.begin`). GitLab tells new problems from old ones by
the fingerprint, and shows only the first issue of a fingerprint: it is made from what the
problem is (file, entry, field, message) but not its line, so that a problem moved by an edit
above it is not new, and problems alike in one file are told apart by their order.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler.commands.sarif import RULE_ID, from_here
from reconciler.declarations.entries import LoadError

SEVERITY = "major"
"""GitLab's scale is info, minor, major, critical, blocker. A declaration that does not load
does not run; `critical` and `blocker` are left for what harms once merged."""


def code_quality_report(errors: Sequence[LoadError], root: Path) -> list[dict[str, Any]]:
    """The Code Quality issues of `errors`, whose paths are relative to `root`."""
    seen: Counter[tuple[str, ...]] = Counter()
    issues: list[dict[str, Any]] = []
    for error in errors:
        path = from_here(error.location.path, root)
        what = (path, error.entry or "", error.field or "", error.message)
        seen[what] += 1
        key = "\0".join([RULE_ID, *what, str(seen[what])])
        issues.append({
            "description": f"{error.field}: {error.message}" if error.field else error.message,
            "check_name": RULE_ID,
            "fingerprint": hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest(),
            "severity": SEVERITY,
            # Lines start at 1, as the loader's do; a problem of the whole file is on line 1.
            "location": {"path": path, "lines": {"begin": max(error.location.line, 1)}},
        })
    return issues
