"""The API server's generic rules, for the emulator: label and field selectors, the three patch
formats, `Status` bodies, and the time formats of object metadata.

Written from the Kubernetes API conventions and the reference of `labels.Parse`
(https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

Requirement = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\((.*)\))?\s*$")
_EQUALITY = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


class ApiError(Exception):
    """An error the API server answers with a `Status` body."""

    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def success_status(**details: Any) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current)
    return terms


def label_selector(selector: str | None) -> Requirement:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` → a predicate over labels."""
    requirements: list[Requirement] = []
    for term in _split_terms(selector or ""):
        equality = _EQUALITY.match(term)
        if equality:
            key, op, value = equality.groups()
            if op == "!=":
                requirements.append(lambda ls, k=key, v=value: ls.get(k) != v)
            else:
                requirements.append(lambda ls, k=key, v=value: ls.get(k) == v)
            continue
        found = _SET.match(term)
        if not found:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        negated, key, op, values = found.groups()
        if op is not None and negated:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        options = {v.strip() for v in (values or "").split(",") if v.strip()}
        if op == "in":
            requirements.append(lambda ls, k=key, o=options: ls.get(k) in o)
        elif op == "notin":
            requirements.append(lambda ls, k=key, o=options: ls.get(k) not in o)
        elif negated:
            requirements.append(lambda ls, k=key: k not in ls)
        else:
            requirements.append(lambda ls, k=key: k in ls)
    return lambda labels: all(r(labels) for r in requirements)


FIELDS = {
    "metadata.name": lambda obj: obj.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda obj: obj.get("metadata", {}).get("namespace", ""),
    "status.phase": lambda obj: (obj.get("status") or {}).get("phase", ""),
}


def field_selector(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_terms(selector or ""):
        found = _EQUALITY.match(term)
        if not found or found.group(1) not in FIELDS:
            raise ApiError(400, "BadRequest", f'field label not supported: "{term.strip()}"')
        field, op, value = found.groups()
        get = FIELDS[field]
        if op == "!=":
            checks.append(lambda obj, g=get, v=value: g(obj) != v)
        else:
            checks.append(lambda obj, g=get, v=value: g(obj) == v)
    return lambda obj: all(c(obj) for c in checks)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 JSON Patch; a failed `test` or a missing path is 422, as the API answers."""
    doc = copy.deepcopy(target)
    try:
        for op in operations:
            parts = _pointer(op["path"])
            parent = _parent(doc, parts)
            last = parts[-1] if parts else None
            kind = op["op"]
            if kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != op["value"]:
                    raise ApiError(422, "Invalid", f"test operation failed at {op['path']}")
            elif kind in ("add", "replace"):
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(str(last))
                    if kind == "add":
                        parent.insert(index, copy.deepcopy(op["value"]))
                    else:
                        parent[index] = copy.deepcopy(op["value"])
                else:
                    if kind == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[int(str(last)) if isinstance(parent, list) else last]
            else:
                raise ApiError(422, "Invalid", f"unsupported JSON Patch operation {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise ApiError(422, "Invalid", f"the JSON Patch cannot be applied: {err!r}") from None
    return doc


MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
