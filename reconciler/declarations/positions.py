"""Where in a file a problem is: line and column of the offending key or value.

The fast loader keeps no positions. When a document is wrong, the parser's events of its
file are read again, recording the line and column of every key, value and list item, and
the problem's field path (`spec.env.FOO`) is followed through them.
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
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

from reconciler.declarations.cparser import CParser
from reconciler.declarations.limits import MAX_DEPTH

Segment = str | int
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_KEY_MARK = "[key]"
_MAX_SHOWN = 60
_SKIPPED_EVENTS = (StreamStartEvent, DocumentEndEvent)


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
    """The positions of every key, value and list item of one file's text, kept for
    locating several problems.

    Built from the C parser's events in one pass with a stack of our own: linear in the
    file (each mapping's keys are indexed once, so locating an error costs the same in a
    mapping of ten keys as in one of fifty thousand), never recursive, and no deeper than
    MAX_DEPTH, whatever the text holds."""

    def __init__(self, text: str) -> None:
        self._documents: list[Any] = _positions(text)

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
            scalar = node is _SCALAR
            position = value_pos if scalar and not at_key else key_pos
        return (position[0] + 1, position[1] + 1), path


Position = tuple[int, int]
"""0-based line and column."""


class _Map:
    __slots__ = ("keys", "start")

    def __init__(self, start: Position) -> None:
        self.start = start
        self.keys: dict[Any, tuple[Segment, Position, Position, Any]] = {}
        """key → (key as written, key position, value position, value)."""


class _Seq:
    __slots__ = ("items", "start")

    def __init__(self, start: Position) -> None:
        self.start = start
        self.items: list[tuple[Position, Any]] = []


_SCALAR = object()
"""A scalar value other than null (a null is None)."""
_NO_KEY = object()
_UNNAMED = object()
"""The key of a mapping entry whose key is not a scalar: never looked up."""
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_INT = re.compile(r"^[-+]?[0-9]{1,18}$")


def _positions(text: str) -> list[Any]:
    """The root of each document of `text`: _Map, _Seq, _SCALAR or None. Up to the first
    YAML error, or the first collection nested deeper than MAX_DEPTH."""
    documents: list[Any] = []
    stack: list[list[Any]] = []
    """Open collections: [node, pending key (or _NO_KEY), its position]."""
    anchors: dict[str, Any] = {}
    parser = _parser(text)
    try:
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is StreamEndEvent:
                break
            if kind is DocumentStartEvent:
                anchors = {}
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                node = stack.pop()[0]
                _attach(stack, documents, node, node.start, node)
            elif kind not in _SKIPPED_EVENTS and not _node(event, stack, documents, anchors):
                break
    except (YAMLError, ValueError, TypeError):
        pass  # what was read up to the error is located; the rest at its document
    finally:
        parser.dispose()
    while stack:  # cut short: what was read of the open collections still counts
        node = stack.pop()[0]
        _attach(stack, documents, node, node.start, node)
    return documents


def _node(
    event: Any, stack: list[list[Any]], documents: list[Any], anchors: dict[str, Any]
) -> bool:
    """Record a scalar, an alias or the start of a collection; False when that collection
    would nest deeper than MAX_DEPTH."""
    kind = type(event)
    mark = event.start_mark
    position = (mark.line, mark.column)
    if kind is AliasEvent:
        _attach(stack, documents, anchors.get(event.anchor), position, _UNNAMED)
        return True
    if kind is MappingStartEvent or kind is SequenceStartEvent:
        if len(stack) >= MAX_DEPTH:
            return False
        node: Any = _Map(position) if kind is MappingStartEvent else _Seq(position)
        stack.append([node, _NO_KEY, position])
    else:
        node = _scalar(event)
        _attach(stack, documents, node, position, _key_of(event))
    if event.anchor is not None:
        anchors[event.anchor] = node
    return True


def _attach(
    stack: list[list[Any]], documents: list[Any], node: Any, position: Position, key: Any
) -> None:
    """Put a finished node where it belongs: a document's root, a list's item, a mapping's
    key (then `key` is how it is looked up) or the value of the key before it."""
    if not stack:
        documents.append(node)
        return
    frame = stack[-1]
    parent = frame[0]
    if isinstance(parent, _Seq):
        parent.items.append((position, node))
    elif frame[1] is _NO_KEY:
        frame[1], frame[2] = key, position
    else:
        written = frame[1]
        if isinstance(written, str | int) and written not in parent.keys:
            parent.keys[written] = (written, frame[2], position, node)
        frame[1] = _NO_KEY


def _scalar(event: Any) -> Any:
    if event.implicit[0] and event.tag is None and event.value in _NULLS:
        return None
    return _SCALAR


def _key_of(event: Any) -> Segment:
    """A scalar key as the constructed data has it: plain whole numbers are ints."""
    value: str = event.value
    if event.implicit[0] and event.tag is None and _INT.match(value):
        return int(value)
    return value


def _parser(text: str) -> Any:
    if CParser is not None:
        return CParser(text)
    return YAML(typ="safe", pure=True).get_constructor_parser(text)[1]


def _start(node: Any, document_line: int) -> Position:
    if isinstance(node, _Map | _Seq):
        return node.start
    return document_line - 1, 0


def _child(node: Any, seg: Segment) -> tuple[Segment, Position, Position, Any] | None:
    """(key as written, key position, value position, value) of `seg` in `node`."""
    if isinstance(node, _Seq):
        if isinstance(seg, int) and 0 <= seg < len(node.items):
            position, item = node.items[seg]
            return seg, position, position, item
        return None
    if isinstance(node, _Map):
        found = node.keys.get(seg)
        if found is None and isinstance(seg, str) and _INT.match(seg):
            found = node.keys.get(int(seg))
        if found is None and isinstance(seg, int):
            found = node.keys.get(str(seg))
        return found
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

