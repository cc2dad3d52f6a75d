"""ruamel's C parser (libyaml), or None where the C extension is not built for this
interpreter: the pure-Python parser is used then, slower, with the same results."""

from __future__ import annotations

try:
    from _ruamel_yaml import CParser  # type: ignore[import-not-found]
except ImportError:
    CParser = None

__all__ = ["CParser"]
