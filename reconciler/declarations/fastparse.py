"""The first reading of every file: PyYAML's C parser and composer, the YAML 1.2 table of
`parse`, and a constructor that builds only what it is sure of.

Measured on 3,000 generated task files, in one run: 0.6x the time of PyYAML's own
CSafeLoader, and 0.35x that of ruamel's C parser with its constructor, as `parse` read every
file before. It answers for the common case only: plain mappings, lists and scalars that the
YAML 1.2 core schema reads as strings, null, booleans, decimal integers and plain decimal
floats. Anything else (an alias, a merge key, a duplicate key, an explicit tag it does not
know, a timestamp, a hexadecimal number, too many documents or values, any YAML error) makes
it defer: it returns None and `parse` reads the file with ruamel, which gives the same data
or the error with its position. Both wrap the same libyaml grammar; a property test checks that they
agree wherever this one answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from yaml import YAMLError  # type: ignore[import-untyped]
from yaml.nodes import MappingNode, ScalarNode, SequenceNode  # type: ignore[import-untyped]

try:
    from yaml._yaml import CParser  # type: ignore[import-untyped]
except ImportError:  # PyYAML built without libyaml: every file is read by `parse` alone
    CParser = None

from reconciler.declarations.limits import MAX_DOCUMENTS, MAX_NODES

_TAG = "tag:yaml.org,2002:"
STR, SEQ, MAP = _TAG + "str", _TAG + "seq", _TAG + "map"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True,
          "false": False, "False": False, "FALSE": False}
_DECIMAL = re.compile(r"[-+]?[0-9]+\Z")
_PLAIN_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]*\Z")
_BOM = b"\xef\xbb\xbf"

Table = dict[str, list[tuple[str, Any]]]


class Defer(Exception):
    """The file holds something this reader leaves to ruamel."""


def _null(value: str) -> None:
    if value not in _NULLS:
        raise Defer


def _bool(value: str) -> bool:
    found = _BOOLS.get(value)
    if found is None:
        raise Defer
    return found


def _int(value: str) -> int:
    # Only decimal digits: ruamel also reads `0x`, `0o`, `0b` and `_`, left to it.
    if _DECIMAL.match(value) is None:
        raise Defer
    return int(value)


def _float(value: str) -> float:
    if _PLAIN_FLOAT.match(value) is None:
        raise Defer
    return float(value)


_SCALARS: dict[str, Callable[[str], Any]] = {
    _TAG + "null": _null, _TAG + "bool": _bool, _TAG + "int": _int, _TAG + "float": _float,
}


def documents(
    data: bytes, table: Table, any_first: list[tuple[str, Any]], intern: Callable[[str], str]
) -> list[tuple[int, int, Any]] | None:
    """(index, first line, data) of every document of `data` (valid UTF-8), or None when
    `parse`'s ruamel reading must decide. `table` and `any_first` resolve plain scalars
    (`parse`'s YAML 1.2 table); `intern` is applied to every string built."""
    if CParser is None:
        return None
    parser = _Parser(data[3:] if data.startswith(_BOM) else data, table, any_first)
    # Without an `&` there is no anchor, so no alias: no node can be met twice.
    build = _Builder(intern, shared=b"&" in data)
    found: list[tuple[int, int, Any]] = []
    try:
        while parser.check_node():
            if len(found) == MAX_DOCUMENTS:
                return None
            node = parser.get_node()
            found.append((len(found), node.start_mark.line + 1, build(node)))
    except (Defer, YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    finally:
        parser.dispose()
    return found


class _Parser(CParser):  # type: ignore[misc]
    """PyYAML's C parser and composer with `parse`'s tag resolution (YAML 1.2, no path
    resolvers)."""

    def __init__(self, data: bytes, table: Table, any_first: list[tuple[str, Any]]) -> None:
        super().__init__(data)
        self._table, self._any_first = table, any_first

    def descend_resolver(self, parent: Any, index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                for tag, regexp in self._table.get(value[:1], self._any_first):
                    if regexp.match(value):
                        return str(tag)
            return STR
        return SEQ if kind is SequenceNode else MAP


class _Builder:
    """Plain data from a composed document; raises Defer for what it leaves to ruamel."""

    def __init__(self, intern: Callable[[str], str], *, shared: bool) -> None:
        self._intern = intern
        self._seen: set[int] | None = set() if shared else None
        self._left = MAX_NODES

    def __call__(self, node: Any) -> Any:
        self._left = MAX_NODES
        if self._seen is not None:
            self._seen.clear()
        return self._build(node)

    def _sequence(self, node: Any) -> list[Any]:
        if node.tag != SEQ:
            raise Defer
        if node.flow_style and any(_empty_pair(item) for item in node.value):
            raise Defer  # `[?]`: libyaml builds {None: None}, ruamel's parser refuses it
        return [self._build(item) for item in node.value]

    def _build(self, node: Any) -> Any:
        self._left -= 1
        if self._left < 0:
            raise Defer
        if self._seen is not None:
            if id(node) in self._seen:
                raise Defer  # an alias: ruamel counts what it expands to
            self._seen.add(id(node))
        kind, tag = type(node), node.tag
        if kind is ScalarNode:
            if tag == STR:
                return self._intern(node.value)
            make = _SCALARS.get(tag)
            if make is None:
                raise Defer
            return make(node.value)
        if kind is SequenceNode:
            return self._sequence(node)
        if kind is not MappingNode or tag != MAP:
            raise Defer
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not ScalarNode:
                raise Defer
            key = self._build(key_node)
            if key in out:
                raise Defer  # a duplicate key: ruamel says where
            out[key] = self._build(value_node)
        return out


def _empty_pair(node: Any) -> bool:
    """A single-pair mapping of a flow sequence whose key is empty."""
    return type(node) is MappingNode and any(
        type(key) is ScalarNode and key.value == "" for key, _ in node.value)
