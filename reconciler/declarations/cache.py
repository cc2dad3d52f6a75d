"""The parse cache persisted in the daemon's state dir, so a restart does not parse every
file again (4 s for 10,000 files; validating their cached data again takes a fraction).

What is stored is the plain data each file parsed to, keyed by (path, Git blob id), not
validated models: a newer reconciler validates it with its own models and gets the same
result as parsing again. The file starts with a format version and the YAML library's
version; any mismatch, or any damage, discards the cache.

Each file's data is serialized on its own, and kept serialized in memory until it is
needed: 600 bytes for a 26-line declaration, against 5 KB as Python objects.

Unpickling is restricted to plain data and our own record types, so a tampered cache file
cannot run code.
"""

from __future__ import annotations

import datetime
import io
import os
import pickle  # restricted to plain data by _Unpickler below
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import __version__ as yaml_version

from reconciler.declarations.parse import RawDocument, RawFile, SyntaxProblem

FORMAT = 2
Key = tuple[str, str]
_ALLOWED = {
    ("reconciler.declarations.parse", "RawFile"): RawFile,
    ("reconciler.declarations.parse", "RawDocument"): RawDocument,
    ("reconciler.declarations.parse", "SyntaxProblem"): SyntaxProblem,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
}


def _header() -> dict[str, Any]:
    return {"format": FORMAT, "yaml": yaml_version}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "datetime" and name in ("date", "datetime", "time", "timedelta", "timezone"):
            return getattr(datetime, name)
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in the parse cache")
        return allowed


def dump_raw(raw: RawFile) -> bytes:
    return pickle.dumps(raw, protocol=5)


def load_raw(blob: bytes) -> RawFile | None:
    """One file's parsed data, or None when the bytes are damaged."""
    try:
        raw = _Unpickler(io.BytesIO(blob)).load()
    except Exception:  # whatever damaged bytes raise, it is only a cache
        return None
    return raw if isinstance(raw, RawFile) else None


def read_cache(path: Path) -> dict[Key, bytes]:
    """The cached parse results (serialized, see `load_raw`), or {} when the file is
    missing, damaged or outdated."""
    try:
        data = path.read_bytes()
        loaded = _Unpickler(io.BytesIO(data)).load()
    except Exception:  # whatever a damaged file raises, it is only a cache
        return {}
    if not isinstance(loaded, dict) or loaded.get("header") != _header():
        return {}
    entries = loaded.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {
        key: value
        for key, value in entries.items()
        if isinstance(key, tuple)
        and len(key) == 2
        and all(isinstance(k, str) for k in key)
        and isinstance(value, bytes)
    }


def write_cache(path: Path, entries: dict[Key, bytes]) -> None:
    """Replace the cache file atomically: a crash mid-write leaves the old one intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps({"header": _header(), "entries": entries}, protocol=5)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
