"""Status records read back at a restart without parsing their files again.

Reading 10,000 status files back (YAML, then validating each record) takes seconds. The
state dir keeps what each file parsed to, by path and the SHA-256 of its bytes, so a restart
parses only the files that differ from those it read the last time: the others give the
record they gave then, as it was built then. The file is written by `declarations.snapshot`
(checked for owner, key, code version and checksum); whatever is wrong with it, the records
are read from the status files as if it were not there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from loguru import logger

from reconciler import status as status_files
from reconciler.declarations import snapshot
from reconciler.records import EntryRecord
from reconciler.types import EntryId

Key = tuple[str, bytes]
_KEY = "status records"


class StatusCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._unsaved: dict[Key, EntryRecord] | None = None
        """What the last read found, while it differs from what the file holds."""
        self.parsed = 0
        """Record files the last `parse` parsed (the others came from the cache)."""

    def parse(self, files: Mapping[str, bytes]) -> tuple[dict[EntryId, EntryRecord], list[str]]:
        """`status.parse` of `files`, taking the record of every file read before from the
        cache."""
        known = self._read()
        used: dict[Key, EntryRecord] = {}
        parsed = 0

        def read(path: str, data: bytes) -> EntryRecord:
            nonlocal parsed
            key = (path, hashlib.sha256(data).digest())
            record = known.get(key)
            if record is None:
                record = status_files.parse_record(path, data)
                parsed += 1
            used[key] = record
            return record

        records, problems = status_files.parse(files, read=read)
        if parsed or len(used) != len(known):
            self._unsaved = used
        self.parsed = parsed
        logger.debug("{} status records from the cache, {} parsed", len(used) - parsed, parsed)
        return records, problems

    def save(self) -> None:
        """Write what the last `parse` found, when the file does not hold it already."""
        if self.path is None or self._unsaved is None:
            return
        value, self._unsaved = self._unsaved, None
        try:
            snapshot.save(self.path, _KEY, value)
        except (Exception, RecursionError) as err:  # only a cache: the next restart parses
            logger.warning("the status cache {} was not saved: {}", self.path, err)

    def _read(self) -> dict[Key, EntryRecord]:
        if self.path is None:
            return {}
        found = snapshot.load(self.path, _KEY)
        if not isinstance(found, dict):
            return {}
        good = all(
            type(key) is tuple and len(key) == 2 and type(key[0]) is str
            and type(key[1]) is bytes and type(record) is EntryRecord
            for key, record in found.items()
        )
        return found if good else {}
