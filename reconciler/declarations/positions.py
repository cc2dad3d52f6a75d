"""Where in a file a problem is: line and column of the offending key or value.

The fast loader keeps no positions. When a document is wrong, its file is parsed again with
ruamel's round-trip loader, which records the line and column of every key, value and list
item, and the problem's field path (`spec.env.FOO`) is followed through it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

Segment = str | int
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_KEY_MARK = "[key]"
_MAX_SHOWN = 60


def field_path(segments: Sequence[Segment]) -> str:
    """`spec.env.FOO`, `spec.command[0]`, `spec.files["report.py"]`: how a field is named in
    messages. Keys that are not plain words are quoted so the path stays unambiguous."""
    out = ""
    for seg in segments:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif _PLAIN_KEY.match(seg):
            out += f".{seg}" if out else seg
        else:
            out += '["' + seg.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return out


class SourceMap:
    """The round-trip parse of one file's text, kept for locating several problems."""

    def __init__(self, text: str) -> None:
        try:
            self._documents: list[Any] = list(YAML(typ="rt").load_all(text))
        except (YAMLError, ValueError, TypeError, RecursionError):
            self._documents = []

    def locate(
        self,
        index: int,
        loc: Sequence[Segment],
        *,
        at_key: bool = False,
        missing_last: bool = False,
        document_line: int = 1,
    ) -> tuple[tuple[int, int], list[Segment]]:
        """(line, column) of what `loc` names in document `index`, and the segments of `loc`
        that exist in the document (the field's path as the user wrote it).

        Segments not found are skipped (union tags that pydantic inserts); the last one is
        kept in the path when `missing_last` (a required field that is absent), and the
        position is then that of the key holding it. A scalar is located at its value; a
        mapping or list at the key holding it; `at_key` always locates the key."""
        node = self._documents[index] if index < len(self._documents) else None
        position = _start(node, document_line)
        path: list[Segment] = []
        for i, seg in enumerate(loc):
            found = _child(node, seg)
            if found is None:
                if missing_last and i == len(loc) - 1 and seg != _KEY_MARK:
                    path.append(seg)
                continue
            key, key_pos, value_pos, node = found
            path.append(key)
            scalar = not isinstance(node, CommentedMap | CommentedSeq) and node is not None
            position = value_pos if scalar and not at_key else key_pos
        return (position[0] + 1, position[1] + 1), path


def _start(node: Any, document_line: int) -> tuple[int, int]:
    if isinstance(node, CommentedMap | CommentedSeq) and node.lc.line is not None:
        return node.lc.line, node.lc.col or 0
    return document_line - 1, 0


def _child(node: Any, seg: Segment) -> tuple[Segment, Any, Any, Any] | None:
    """(key as written, key position, value position, value) of `seg` in `node`."""
    try:
        if isinstance(node, CommentedSeq) and isinstance(seg, int) and 0 <= seg < len(node):
            pos = node.lc.item(seg)
            return seg, pos, pos, node[seg]
        if isinstance(node, CommentedMap):
            for key in node:
                if key == seg or (not isinstance(key, str) and str(key) == str(seg)):
                    written = key if isinstance(key, str | int) else str(key)
                    return written, node.lc.key(key), node.lc.value(key), node[key]
    except (KeyError, IndexError, TypeError, AttributeError):
        # Keys brought in by a `<<` merge have no position of their own.
        return None
    return None


def describe(value: Any) -> str:
    """A short rendering of a value the user wrote, for messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def error_message(err: ErrorDetails, model: type[BaseModel] | None = None) -> str:
    """A pydantic error as a sentence for the person editing the YAML."""
    kind, message = err["type"], err["msg"]
    loc = tuple(err["loc"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1]) if model is not None else []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        if hint:
            return f"unknown field; did you mean {hint[0]!r}?"
        if allowed:
            return "unknown field; expected one of " + ", ".join(sorted(allowed))
        return "unknown field"
    if kind in ("value_error", "assertion_error"):
        return re.sub(r"^(Value|Assertion) error, ", "", message)
    if "input" in err and loc and loc[-1] != _KEY_MARK:
        return f"{message}, got {describe(err['input'])}"
    return str(message)


def allowed_keys(model: type[BaseModel], loc: Sequence[Segment]) -> list[str]:
    """The field names (as written in YAML) of the object at `loc` inside `model`."""
    current: Any = model
    for seg in loc:
        step = _step(current, seg)
        if step is not None:
            current = step
    return [name for m in _models(current) for name in _aliases(m)]


def _step(annotation: Any, seg: Segment) -> Any:
    for candidate in _arms(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            for name, info in candidate.model_fields.items():
                if seg in (name, info.alias):
                    return info.annotation
        origin = get_origin(candidate)
        if origin is dict:
            return get_args(candidate)[1]
        if origin is list and isinstance(seg, int):
            return get_args(candidate)[0]
    return None


def _arms(annotation: Any) -> list[Any]:
    """The alternatives of a union (and what an Annotated wraps), flattened."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _arms(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return [arm for a in get_args(annotation) for arm in _arms(a)]
    return [annotation]


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [a for a in _arms(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]


def _aliases(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]

