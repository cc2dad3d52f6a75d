"""How deeply a YAML text nests its collections, known before anything recurses over it.

The C composer builds nodes recursively, one C stack frame per level: a flow list nested
thirty thousand deep (`[[[[...`, 60 KB) kills the process with SIGSEGV. The parser under it
keeps its own stack, so its events can be counted safely. Counting them costs a third of a
parse, so a screen over the bytes comes first: it bounds the depth from above and lets
every ordinary file through untouched.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    CollectionEndEvent,
    CollectionStartEvent,
    StreamEndEvent,
)

from reconciler.declarations.cparser import CParser
from reconciler.declarations.limits import MAX_DEPTH

_LEADS = [re.compile(rb"^[ \t?:-]{%d}" % width, re.MULTILINE) for width in range(MAX_DEPTH)]
"""By width: a line whose indentation, with the indicators (`- `, `? `, `: `) that open
compact nested collections on it, is at least that wide."""


def bounded(data: bytes) -> bool:
    """True when `data` cannot nest deeper than MAX_DEPTH, judging by its bytes alone.

    A block collection nested in another starts further right, except a list that is a
    mapping's value, which may start in the same column: so block nesting is at most twice
    the widest indentation (indicators included) plus one. Flow collections need a bracket
    each, and a flow list may hold a one-pair mapping without braces (`[a: b]`): twice the
    brackets. Aliases are not nested nodes; expansion is bounded elsewhere."""
    brackets = data.count(b"[") + data.count(b"{")
    # 2 * brackets + 2 * (widest + 1) + 1 <= MAX_DEPTH, solved for the widest allowed.
    allowed = (MAX_DEPTH - 1 - 2 * brackets) // 2 - 1
    if allowed < 0:
        return False
    return _LEADS[allowed + 1].search(data) is None


def deepest(text: str) -> tuple[int, int] | None:
    """(line, column), 1-based, where `text` first nests deeper than MAX_DEPTH, or None.
    Text that is not valid YAML is judged up to its first error, which the parse that
    follows reports."""
    parser = _parser(text)
    depth = 0
    try:
        while True:
            event = parser.get_event()
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    return mark.line + 1, mark.column + 1
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
            elif isinstance(event, StreamEndEvent):
                return None
    except YAMLError:
        return None
    finally:
        parser.dispose()


def too_deep(data: bytes, text: str) -> tuple[int, int] | None:
    """Where `text` (the decoding of `data`) nests too deeply, or None: the screen, then
    the count when the screen cannot tell."""
    if bounded(data):
        return None
    return deepest(text)


def _parser(text: str) -> Any:
    if CParser is not None:
        return CParser(text)
    return YAML(typ="safe", pure=True).get_constructor_parser(text)[1]
