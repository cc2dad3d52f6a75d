"""Objects the daemon saved in its own state dir, read back as they were: no validation, no
hashing (a restart with 10,000 entries takes a fraction of a second instead of seconds).

That is safe only for bytes this daemon wrote itself, so reading one checks, before it
believes it:
- the file is a regular file owned by this user that nobody else may read or write (it is
  written 0600);
- it names the key it was saved under (what it holds, and the code that saved it: a hash
  of the reconciler package's source, so any other version, or a changed model, misses);
- it has the length its header gives, and the section read has the SHA-256 the header gives
  (a truncated or damaged file);
- it unpickles with nothing but plain data and the classes of the pure layers (records,
  runs, types, declarations), so even a file that passed every check cannot name a function
  to call.
Any check that fails gives None, never an exception: the caller rebuilds what it needs the
slow way, as if there were no file.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import io
import os
import pickle  # restricted by _Unpickler below
import stat
import struct
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

from pydantic_core import TzInfo

_MAGIC = b"RSN1"
_HEAD = struct.Struct(">4sII")
"""Magic, key length, number of sections; then the length and SHA-256 of each section, the
key, and the sections."""
_SECTION = struct.Struct(">Q32s")
_PURE = frozenset({"reconciler.records", "reconciler.runs", "reconciler.types"})
_PURE_PACKAGE = "reconciler.declarations."
_DATETIME = frozenset({"date", "datetime", "time", "timedelta", "timezone"})
_BUILTINS = {"set": set, "frozenset": frozenset, "bytearray": bytearray}


@cache
def code_version() -> str:
    """A hash of the reconciler package's source: objects saved by other code miss."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def save(path: Path, key: str, *sections: object) -> None:
    """Write `sections` under `key`, atomically (a crash leaves the old file or none), 0600;
    each is read back on its own (`load`). Raises OSError, or pickle's errors for a value
    that cannot be saved."""
    named = _named(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            # Pickled straight into the file, a frame at a time: 10,000 entries pickled
            # into memory first would hold their payload twice over at the peak.
            handle.seek(_HEAD.size + len(sections) * _SECTION.size)
            handle.write(named)
            table = []
            for value in sections:
                out = _Counted(handle)
                pickle.Pickler(out, protocol=5).dump(value)
                table.append(_SECTION.pack(out.size, out.digest.digest()))
            handle.seek(0)
            handle.write(_HEAD.pack(_MAGIC, len(named), len(sections)) + b"".join(table))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Counted:
    """Writes through to a file, counting and hashing what it writes."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._handle.write(data)


def load(path: Path, key: str, section: int = 0) -> Any:
    """Section `section` of what `save` wrote under `key`, or None when the file is missing,
    not ours, saved under another key or by other code, damaged or truncated."""
    try:
        data = _own_bytes(path)
    except OSError:
        return None
    if data is None or len(data) < _HEAD.size:
        return None
    magic, key_size, count = _HEAD.unpack_from(data)
    named = _named(key)
    start = _HEAD.size + count * _SECTION.size
    if magic != _MAGIC or not 0 <= section < count or len(data) < start:
        return None
    table = [_SECTION.unpack_from(data, _HEAD.size + n * _SECTION.size) for n in range(count)]
    offset = start + key_size
    if data[start:offset] != named or len(data) != offset + sum(s for s, _ in table):
        return None
    offset += sum(size for size, _ in table[:section])
    size, digest = table[section]
    payload = memoryview(data)[offset:offset + size]
    if hashlib.sha256(payload).digest() != digest:
        return None
    # Unpickling builds hundreds of thousands of long-lived, acyclic objects: collections
    # that scan them again and again while they are built make it several times slower.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _Unpickler(io.BytesIO(payload)).load()
    except (Exception, RecursionError):  # whatever odd bytes raise, it is only a cache
        return None
    finally:
        if paused:
            gc.freeze()
            gc.enable()


def _named(key: str) -> bytes:
    return f"{key}\0{code_version()}".encode()


def _own_bytes(path: Path) -> bytes | None:
    """The content of `path` when it is a regular file of ours that only we can use."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & 0o077):
            return None
        return handle.read()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "datetime" and name in _DATETIME:
            return getattr(datetime, name)
        if module == "builtins" and name in _BUILTINS:
            return _BUILTINS[name]
        if (module, name) == ("pydantic_core._pydantic_core", "TzInfo"):
            return TzInfo  # the time zone of a datetime pydantic validated
        if (module in _PURE or module.startswith(_PURE_PACKAGE)) and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a snapshot")
