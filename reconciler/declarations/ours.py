"""Which YAML documents are declarations (DESIGN §7): those whose apiVersion is in our group,
and those that look as if they were meant to be, so that a typo is an error instead of a
declaration that silently disappears (and, with `prune`, a Stack destroyed).

A document is ours when
- its apiVersion is in the `reconciler.io` group, or in a group one or two typing slips
  away from it (`reconcilr.io`, `reconciler.oi`);
- its apiVersion key is misspelled (`apiversion`, `APIVersion`, `api_version`) and holds
  such a value;
- it has no apiVersion at all and a kind of ours (`Task`, `Stack`, `Defaults`, in any case).

`tekton.dev/v1beta1` with `kind: Task` is another group entirely: other YAML.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.types import API_VERSION, Kind

API_GROUP = API_VERSION.partition("/")[0]
KINDS = tuple(kind.value for kind in Kind)
_LOWER_KINDS = {k.lower(): k for k in KINDS}
_KEY = "apiVersion"
_MAX_SLIPS = 2
"""Edits (insertion, deletion, substitution, swap of neighbours) that still make a group a
near miss of ours: `reconciler.io` is 13 characters, and nothing else in common use is
within two of it."""

_MARKER = API_GROUP.encode()
# Searched in the lower-cased bytes: a pattern that starts with a literal is found by a
# fast scan, five times faster than the same pattern ignoring case.
_SCREEN = re.compile(
    rb"api[_-]?version[\"']?\s*:\s*[\"']?([a-z0-9.-]{%d,%d})(?![a-z0-9.-])"
    % (len(API_GROUP) - _MAX_SLIPS, len(API_GROUP) + _MAX_SLIPS)
)
_KIND_LINE = re.compile(
    rb"kind[\"']?\s*:\s*[\"']?(?:%s)\b" % "|".join(KINDS).lower().encode()
)


def may_claim(data: bytes) -> bool:
    """Whether a file's bytes could hold a document of ours: cheap (a microsecond for a
    Kubernetes manifest), so that the YAML of other tools (CI configs, manifests, Helm
    values) is skipped without being parsed. Never False for a file `claims` would take."""
    if _MARKER in data:
        return True
    lowered = data.lower()
    if _KIND_LINE.search(lowered) is not None:
        return True
    return any(near_group(m.group(1).decode("ascii")) for m in _SCREEN.finditer(lowered))


def near_group(group: str) -> bool:
    """Whether `group` is ours or a near miss of it (case aside)."""
    return slips(group.lower(), API_GROUP, _MAX_SLIPS) <= _MAX_SLIPS


def version_key(data: dict[Any, Any]) -> Any:
    """The key holding the apiVersion as written (`apiVersion`, or a misspelling of it),
    or None."""
    if _KEY in data:
        return _KEY
    for key in data:
        if isinstance(key, str) and normalized_key(key) == "apiversion":
            return key
    return None


def normalized_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def claims(data: Any) -> bool:
    """Whether a parsed document is ours (see the module's description)."""
    if not isinstance(data, dict):
        return False
    key = version_key(data)
    if key is None:
        return our_kind(data.get("kind")) is not None
    version = data[key]
    if not isinstance(version, str):
        # A version that is not even text, with a kind of ours: meant as ours.
        return our_kind(data.get("kind")) is not None
    group, slash, _ = version.partition("/")
    if key == _KEY and group == API_GROUP and slash:
        return True  # the common case, first
    return near_group(group)


def our_kind(value: Any) -> str | None:
    """The kind of ours that `value` names, in any case, or None."""
    if not isinstance(value, str):
        return None
    return _LOWER_KINDS.get(value.lower())


def slips(a: str, b: str, limit: int) -> int:
    """The optimal string alignment distance between `a` and `b`, or `limit + 1` when it
    is larger than `limit` (checked cheaply first)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    if a == b:
        return 0
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, previous = previous, current
    return min(previous[-1], limit + 1)
