"""Reading one YAML file into plain data, fast.

Every file is read by `fastparse` (PyYAML's C parser), and by ruamel's C-backed safe loader
when that defers: for anything out of the ordinary, and for every error, whose position
ruamel's marks give. Only files that turn out to be wrong are parsed again, by `positions`
(the round-trip loader, 17x slower), to find where in them.
What comes out is plain Python data (dicts, lists, scalars): it can be cached and persisted,
and validating it again with newer models gives the same result as parsing it again.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver, implicit_resolvers
from ruamel.yaml.tag import Tag

from reconciler.declarations import fastparse
from reconciler.declarations.cparser import CParser
from reconciler.declarations.depth import too_deep
from reconciler.declarations.limits import MAX_DEPTH, MAX_DOCUMENTS, MAX_FILE_BYTES, MAX_NODES
from reconciler.declarations.ours import API_GROUP, claims, may_claim

__all__ = ["API_GROUP", "MAX_NODES", "load_document", "parse_file"]

_DEFAULTS_KIND = re.compile(rb"^[ \t]*kind:[ \t]*[\"']?Defaults\b", re.MULTILINE)
"""Spaces, not `\\s`: with MULTILINE, `^\\s*` would scan from every line of a long run of
blank lines to its end, quadratic in the file."""
_SHORT = 64
"""Strings up to this length are interned (see `interned`)."""


@dataclass(frozen=True, slots=True)
class RawDocument:
    index: int
    """Position among the file's documents, from 0; empty documents count."""
    line: int
    """1-based line where the document's content starts."""
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    line: int
    column: int
    message: str


@dataclass(frozen=True, slots=True)
class RawFile:
    """The part of one file the loader cares about: documents that claim our API group, or
    why the file could not be read. Files that never mention the group have neither."""

    documents: tuple[RawDocument, ...] = ()
    problem: SyntaxProblem | None = None
    mentions_defaults: bool = False
    """The text has a `kind: Defaults` line: when it cannot be parsed, the repository's
    Defaults are unknown."""


NOT_DECLARATIONS = RawFile()


def parse_file(data: bytes) -> RawFile:
    # Cheap screen first: YAML that cannot hold a document of ours (CI configs, Kubernetes
    # manifests, Helm values) is skipped without being parsed.
    if not may_claim(data):
        return NOT_DECLARATIONS
    mentions_defaults = _DEFAULTS_KIND.search(data) is not None
    if len(data) > MAX_FILE_BYTES:
        problem = SyntaxProblem(
            1, 1, f"the file is {len(data)} bytes; declaration files are limited to "
            f"{MAX_FILE_BYTES} bytes (1 MiB)"
        )
        return RawFile(problem=problem, mentions_defaults=mentions_defaults)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        problem = SyntaxProblem(line, column, "the file is not UTF-8 text")
        return RawFile(problem=problem, mentions_defaults=mentions_defaults)
    try:
        deep = too_deep(data, text)
        if deep is not None:
            message = f"the YAML nests more than {MAX_DEPTH} levels deep, the limit"
            problem = SyntaxProblem(*deep, message)
            return RawFile(problem=problem, mentions_defaults=mentions_defaults)
        documents = tuple(_documents(data, text))
    except YAMLError as err:
        return RawFile(problem=syntax_problem(err, text), mentions_defaults=mentions_defaults)
    except RecursionError:
        problem = SyntaxProblem(1, 1, "the YAML is nested too deeply to read")
        return RawFile(problem=problem, mentions_defaults=mentions_defaults)
    return RawFile(documents=documents, mentions_defaults=mentions_defaults)


def _documents(data: bytes, text: str) -> list[RawDocument]:
    return [RawDocument(index, line, value) for index, line, value in _read(data, text)
            if claims(value)]


def _read(data: bytes, text: str) -> Iterable[tuple[int, int, Any]]:
    """(index, first line, data) of every document: read by `fastparse` when it can, by
    ruamel when it defers."""
    fast = fastparse.documents(data, _IMPLICIT, _ANY_FIRST, _intern)
    return fast if fast is not None else _each_document(text)


def _each_document(text: str) -> Iterator[tuple[int, int, Any]]:
    """(index, first line, data) of every document of `text`, of ours or not."""
    loader, parser = _new_loader(text)
    try:
        # The loop of `load_all`, keeping each document's node so its first line is known.
        index = 0
        while loader.composer.check_node():
            if index == MAX_DOCUMENTS:
                line = parser.peek_event().start_mark.line + 1
                raise _LimitError(
                    line, f"the file has more than {MAX_DOCUMENTS} documents, the limit"
                )
            node = loader.composer.get_node()
            # Without an anchor (&) there is no alias to expand: nothing to count. With
            # one, counted on the nodes, before merge keys are expanded: each `<<: [*a, *a]`
            # doubles what it merges, thirty of them are a billion values.
            if "&" in text and _too_big(node):
                raise _LimitError(
                    node.start_mark.line + 1,
                    f"the document has more than {MAX_NODES} values once aliases are expanded",
                )
            try:
                data = loader.construct_document(node)
            except (ValueError, TypeError, OverflowError) as err:
                raise _scalar_error(loader, node, err) from None
            yield index, node.start_mark.line + 1, data
            index += 1
    finally:
        _dispose(loader, parser)


def every_document(data: bytes) -> list[tuple[int, Any]] | None:
    """(first line, data) of every document of a file, whatever it declares, within the
    same bounds as `parse_file`; None when the file cannot be read within them."""
    try:
        return [(line, value) for _, line, value in _bounded(data)]
    except (YAMLError, ValueError, RecursionError):
        return None


def load_document(data: bytes) -> Any:
    """The first document of a file a program wrote (a status record read back at restart),
    within the bounds of `parse_file`: the status branch is pushed to by people too. Raises
    YAMLError, or ValueError for a file beyond the bounds."""
    for _, _, value in _bounded(data):
        return value
    return None


def _bounded(data: bytes) -> Iterable[tuple[int, int, Any]]:
    """`_read` of a file within the size, encoding and depth bounds; ValueError for one
    beyond them."""
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the file is larger than {MAX_FILE_BYTES} bytes")
    text = data.decode("utf-8-sig")
    if too_deep(data, text) is not None:
        raise ValueError(f"the YAML nests more than {MAX_DEPTH} levels deep, the limit")
    return _read(data, text)


def _scalar_error(loader: Any, root: Node, err: Exception) -> YAMLError:
    """A value that parses but cannot be built (`2024-13-45`, `!!int abc`): find which one,
    since the error itself does not say where."""
    loader.constructed_objects, loader.recursive_objects, loader.state_generators = {}, {}, []
    stack = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            try:
                loader.construct_object(node)
            except (ValueError, TypeError, OverflowError, YAMLError) as scalar_err:
                return MarkedYAMLError(
                    problem=f"cannot read {_shortened(node.value)}: {scalar_err}",
                    problem_mark=node.start_mark,
                )
        elif isinstance(node, MappingNode):
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
    return MarkedYAMLError(problem=f"cannot read a value: {err}", problem_mark=root.start_mark)


def _shortened(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Resolver(VersionedResolver):
    """YAML 1.2 tag resolution from a table built once. ruamel's own looks the YAML version
    up for every scalar and extends its resolver lists while doing so, which made it most
    of the parse time. `%YAML 1.1` directives are not honoured: declarations are YAML 1.2
    (`yes` is a string, `010` is ten)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode:
            if implicit[0]:
                for tag, regexp in _IMPLICIT.get(value[:1], _ANY_FIRST):
                    if regexp.match(value):
                        return Tag(suffix=tag)
            return self.DEFAULT_SCALAR_TAG
        if kind is SequenceNode:
            return self.DEFAULT_SEQUENCE_TAG
        return self.DEFAULT_MAPPING_TAG


def _implicit_table() -> tuple[dict[str, list[tuple[str, Any]]], list[tuple[str, Any]]]:
    by_first: dict[str | None, list[tuple[str, Any]]] = {}
    for versions, tag, regexp, first in implicit_resolvers:
        if (1, 2) in versions:
            chars: list[str | None] = list(first) if first else [None]
            for char in chars:
                by_first.setdefault(char, []).append((tag, regexp))
    any_first = by_first.pop(None, [])
    table = {k: v + any_first for k, v in by_first.items() if k is not None}
    return table, any_first


_IMPLICIT, _ANY_FIRST = _implicit_table()


if CParser is not None:

    class _FastLoader(CParser, SafeConstructor, _Resolver):  # type: ignore[misc]
        """The C parser with the safe constructor: what `YAML(typ="safe", pure=False)`
        builds for every call, made once."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            self._parser = self._composer = self
            SafeConstructor.__init__(self, loader=self)
            self.allow_duplicate_keys = False
            _Resolver.__init__(self, version=None, loadumper=self)


_STR = "tag:yaml.org,2002:str"


def _new_loader(text: str) -> tuple[Any, Any]:
    """(constructor, parser) for `text`."""
    if CParser is not None:
        loader = _FastLoader(text)
        return loader, loader
    constructor, parser = YAML(typ="safe", pure=True).get_constructor_parser(text)
    constructor.yaml_constructors = {**constructor.yaml_constructors, _STR: _interned_str}
    return constructor, parser


def _dispose(loader: Any, parser: Any) -> None:
    """Release the parser and break the loader's references to itself, so it is freed at
    once even while the garbage collector is paused for a bulk load."""
    parser.dispose()
    for name in ("_parser", "_composer", "loader", "_constructor", "loadumper", "_resolver"):
        if getattr(loader, name, None) is loader:
            setattr(loader, name, None)


def _interned_str(constructor: Any, node: Any) -> Any:
    """A YAML string, as its one interned copy when short. Declarations repeat the same
    keys, images, quantities, labels and commands in file after file, and the validated
    models keep these strings: 10,000 files hold 200,000 of them, most of them equal."""
    value = constructor.construct_scalar(node)
    return _intern(value) if type(value) is str else value


def interned(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its short strings interned as parsing does (for data that was not just
    parsed). Raises ValueError for more than MAX_NODES values or a structure that refers to
    itself, which parsed YAML never has but a damaged cache could."""
    left = MAX_NODES

    def walk(value: Any) -> Any:
        nonlocal left
        left -= 1
        if left < 0:
            raise ValueError(f"more than {MAX_NODES} values")
        kind = type(value)
        if kind is dict:
            # Strings inline: most values are, and a call per value doubles the time.
            out = {}
            for key, item in value.items():
                name = _intern(key) if type(key) is str else walk(key)
                if type(item) is str:
                    left -= 1
                    out[name] = _intern(item)
                else:
                    out[name] = walk(item)
            left -= len(value)
            return out
        if kind is list:
            return [walk(item) for item in value]
        return _intern(value) if kind is str else value

    return walk(data)  # type: ignore[no-any-return]


def _intern(value: str) -> str:
    return sys.intern(value) if len(value) <= _SHORT else value


if CParser is not None:
    _FastLoader.add_constructor(_STR, _interned_str)


def _too_big(root: Node) -> bool:
    """Whether the document under `root` has more than MAX_NODES values with every alias
    (and so every merge) expanded. Walks at most that many: a structure that refers to
    itself is too big, not endless."""
    budget = MAX_NODES
    stack = [root]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            return True
        if isinstance(node, MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return False


class _LimitError(YAMLError):
    """A bound of `limits` breached, at a line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


_MAX_MESSAGE = 200
"""The YAML library's messages quote the values involved (a duplicate key's, whole): cut."""


def syntax_problem(err: YAMLError, text: str) -> SyntaxProblem:
    """Where a YAML error happened and what it is, from the error's own mark."""
    found = _syntax_problem(err, text)
    if len(found.message) <= _MAX_MESSAGE:
        return found
    return SyntaxProblem(found.line, found.column, found.message[: _MAX_MESSAGE - 1] + "…")


def _syntax_problem(err: YAMLError, text: str) -> SyntaxProblem:
    """Where a YAML error happened and what it is, from the error's own mark."""
    if isinstance(err, _LimitError):
        return SyntaxProblem(err.line, 1, str(err))
    if isinstance(err, ReaderError):
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        return SyntaxProblem(line, column, f"invalid YAML: {err.reason} (#x{err.character:04x})")
    if isinstance(err, MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        problem = (err.problem or err.context or "invalid YAML").strip()
        if err.context and err.problem and err.context_mark is not None:
            where = err.context_mark.line + 1
            problem = f"{problem} ({err.context.strip()} started on line {where})"
        if mark is not None:
            return SyntaxProblem(mark.line + 1, mark.column + 1, f"invalid YAML: {problem}")
        return SyntaxProblem(1, 1, f"invalid YAML: {problem}")
    return SyntaxProblem(1, 1, f"invalid YAML: {str(err).strip() or type(err).__name__}")
