"""The parse cache persisted in the daemon's state dir, so a restart does not parse every
file again (4 s for 10,000 files; validating their cached data again takes a fraction).

What is stored is the plain data each file parsed to, keyed by (path, Git blob id), not
validated models: a newer reconciler validates it with its own models and gets the same
result as parsing again. The file starts with a format version and the YAML library's
version; any mismatch discards the cache.

Each file's data is serialized on its own, and kept serialized in memory until it is
needed: 600 bytes for a 26-line declaration, against 5 KB as Python objects.

The daemon saves after every commit, so the file is a snapshot followed by the changes
saved since, appended (a commit that changes one file appends under a kilobyte instead of
rewriting megabytes); it is written whole again once the changes outgrow the snapshot.
Every record carries its length and SHA-256: reading stops at the first damaged one (a
crash while appending), keeping what came before.

Unpickling is restricted to plain data and our own record types, so a tampered cache file
cannot run code.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import pickle  # restricted to plain data by _Unpickler below
import struct
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from ruamel.yaml import __version__ as yaml_version

from reconciler.declarations.parse import RawDocument, RawFile, SyntaxProblem, interned

FORMAT = 3
_FRAME = struct.Struct(">Q32s")
"""Before every record: the length of its payload and the payload's SHA-256."""
_MIN_JOURNAL = 1 << 20
"""Changes are appended until they outgrow the snapshot, or this, whichever is larger."""
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
    """One file's parsed data (its strings interned as when parsed), or None when the
    bytes are damaged."""
    try:
        raw = _Unpickler(io.BytesIO(blob)).load()
        if not isinstance(raw, RawFile) or not all(
            isinstance(d, RawDocument) and isinstance(d.data, dict) for d in raw.documents
        ):
            return None
        documents = tuple(RawDocument(d.index, d.line, interned(d.data)) for d in raw.documents)
    except (Exception, RecursionError):  # whatever damaged bytes raise, it is only a cache
        return None
    return RawFile(documents, raw.problem, raw.mentions_defaults)


class CacheFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._base = 0
        """Size of the snapshot this process read or wrote; 0 when the file must be
        written whole (missing, outdated, damaged)."""
        self._appended = 0

    def read(self) -> dict[Key, bytes]:
        """The cached parse results (serialized, see `load_raw`), or {} when the file is
        missing or outdated."""
        self._base = 0
        try:
            data = self.path.read_bytes()
        except OSError:
            return {}
        records, intact = _records(data)
        if not records or records[0] != _header():
            return {}
        entries: dict[Key, bytes] = {}
        for record in records[1:]:
            _replay(record, entries)
        if intact:  # else written whole at the next save, dropping the damaged end
            self._base, self._appended = len(data), 0
        return entries

    def save(self, entries: Mapping[Key, bytes], put: Iterable[Key], drop: Iterable[Key]) -> None:
        """Store `entries`, which differ from what was last read or saved by the keys
        `put` and `drop`."""
        if self._base:
            record = _frame({"put": {k: entries[k] for k in put}, "drop": list(drop)})
            if self._appended + len(record) <= max(self._base, _MIN_JOURNAL):
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                except OSError:
                    pass  # gone: written whole below
                else:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(record)
                    self._appended += len(record)
                    return
        self._base = write_cache(self.path, entries)
        self._appended = 0


def write_cache(path: Path, entries: Mapping[Key, bytes]) -> int:
    """Replace the cache file atomically (a crash mid-write leaves the old one intact);
    returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    whole = entries if isinstance(entries, dict) else dict(entries)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            size = _write(handle, _header()) + _write(handle, {"put": whole, "drop": []})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size


def _frame(value: Any) -> bytes:
    payload = pickle.dumps(value, protocol=5)
    return _FRAME.pack(len(payload), hashlib.sha256(payload).digest()) + payload


def _write(handle: BinaryIO, value: Any) -> int:
    """Write one record (without copying a large payload into a frame); its size."""
    payload = pickle.dumps(value, protocol=5)
    handle.write(_FRAME.pack(len(payload), hashlib.sha256(payload).digest()))
    handle.write(payload)
    return _FRAME.size + len(payload)


def _records(data: bytes) -> tuple[list[Any], bool]:
    """The records up to the first damaged one, and whether there was none."""
    records: list[Any] = []
    offset = 0
    while offset < len(data):
        if offset + _FRAME.size > len(data):
            return records, False
        size, digest = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        payload = data[start : start + size]
        if len(payload) != size or hashlib.sha256(payload).digest() != digest:
            return records, False
        try:
            records.append(_Unpickler(io.BytesIO(payload)).load())
        except Exception:  # whatever damaged bytes raise, it is only a cache
            return records, False
        offset = start + size
    return records, True


def _replay(record: Any, entries: dict[Key, bytes]) -> None:
    if not isinstance(record, dict):
        return
    put, drop = record.get("put"), record.get("drop")
    if isinstance(put, dict):
        entries.update(
            (key, value)
            for key, value in put.items()
            if isinstance(key, tuple)
            and len(key) == 2
            and all(isinstance(k, str) for k in key)
            and isinstance(value, bytes)
        )
    if isinstance(drop, list):
        for key in drop:
            if isinstance(key, tuple):
                entries.pop(key, None)
