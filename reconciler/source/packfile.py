"""Many new blobs written as one pack file, not one loose file each.

A status commit that rewrites 10,000 records would otherwise create 10,000 files in the
mirror's object folders, which the next upkeep reads back, packs and deletes again: most of
the commit's cost on a busy disk. Here they are compressed into a pack and its index in one
pass, as `git index-pack` would leave them (pack and index version 2, no deltas: the next
full repack finds those), and the objects are readable as soon as the index is in place.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from tempfile import NamedTemporaryFile
from typing import IO

import pygit2

_BLOB = 3
MAX_BYTES = 1 << 30
"""The most content one pack is written for: its offsets then fit the index's 4-byte table
(below 2 GiB), which is all a batch of status records ever needs."""


def write_blobs(repo: pygit2.Repository, contents: Sequence[bytes]) -> list[pygit2.Oid]:
    """Write `contents` (at most MAX_BYTES in all) as blobs in one new pack of `repo`;
    returns their ids, in order."""
    if sum(map(len, contents)) > MAX_BYTES:
        raise ValueError(f"more than {MAX_BYTES} bytes for one pack")
    oids = [pygit2.hash(data) for data in contents]
    unique = dict(zip(oids, contents, strict=True))
    if not unique:
        return oids
    pack_dir = Path(repo.path) / "objects" / "pack"
    entries: dict[pygit2.Oid, tuple[int, int]] = {}
    with NamedTemporaryFile(dir=pack_dir, prefix="tmp_pack_", delete=False) as out:
        try:
            digest = hashlib.sha1()  # noqa: S324 - the pack format's checksum, not a secret
            offset = _write(out, digest, b"PACK" + struct.pack(">II", 2, len(unique)))
            for oid, data in unique.items():
                packed = _header(_BLOB, len(data)) + zlib.compress(data, 1)
                entries[oid] = (offset, zlib.crc32(packed))
                offset += _write(out, digest, packed)
            checksum = digest.digest()
            out.write(checksum)
        except BaseException:
            Path(out.name).unlink(missing_ok=True)
            raise
    stem = pack_dir / f"pack-{checksum.hex()}"
    index = _index(entries, checksum)
    with NamedTemporaryFile(dir=pack_dir, prefix="tmp_idx_", delete=False) as idx:
        idx.write(index)
    # The index last: libgit2 and git see a pack once its index exists.
    os.replace(out.name, stem.with_suffix(".pack"))
    os.replace(idx.name, stem.with_suffix(".idx"))
    return oids


def _write(out: IO[bytes], digest: hashlib._Hash, data: bytes) -> int:
    out.write(data)
    digest.update(data)
    return len(data)


def _header(kind: int, size: int) -> bytes:
    """Type and size: 4 bits of size in the first byte, 7 in each one after."""
    header = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        header.append(byte | 0x80)
        byte, size = size & 0x7F, size >> 7
    header.append(byte)
    return bytes(header)


def _index(entries: dict[pygit2.Oid, tuple[int, int]], checksum: bytes) -> bytes:
    """The version 2 index: fan-out table, sorted ids, CRCs, offsets, checksums."""
    names = sorted(oid.raw for oid in entries)
    by_name = {oid.raw: entry for oid, entry in entries.items()}
    fanout = [0] * 256
    for name in names:
        fanout[name[0]] += 1
    total = 0
    for byte in range(256):
        total += fanout[byte]
        fanout[byte] = total
    parts = [b"\xfftOc", struct.pack(">I", 2), struct.pack(">256I", *fanout), *names,
             struct.pack(f">{len(names)}I", *(by_name[n][1] for n in names)),
             struct.pack(f">{len(names)}I", *(by_name[n][0] for n in names)), checksum]
    body = b"".join(parts)
    return body + hashlib.sha1(body).digest()  # noqa: S324 - the format's checksum
