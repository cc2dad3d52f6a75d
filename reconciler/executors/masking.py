"""Masking secret values in a byte stream as it is written (a run's output into its log)."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from typing import BinaryIO

from reconciler.redact import MASK, masked_values, pattern_for


class MaskingWriter:
    """Writes a byte stream as UTF-8 text with secret values masked, as it arrives.

    Output is written at once, except an ending that could be the start of a secret split
    across reads: that waits for the next read (or the end)."""

    def __init__(self, out: BinaryIO, secrets: Iterable[str]) -> None:
        self._values = masked_values(secrets)
        self._pattern = pattern_for(self._values)
        self._out = out
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _undecided(self, text: str) -> int:
        """Length of the longest ending of `text` that begins some secret."""
        longest = max(map(len, self._values), default=1) - 1
        for size in range(min(longest, len(text)), 0, -1):
            ending = text[-size:]
            if any(value.startswith(ending) for value in self._values):
                return size
        return 0

    def write(self, data: bytes, *, final: bool = False) -> None:
        text = self._pending + self._decoder.decode(data, final=final)
        if self._pattern is None:
            cut = len(text)
            emit = text
        else:
            cut = len(text) if final else len(text) - self._undecided(text)
            for match in self._pattern.finditer(text):
                if match.start() >= cut:
                    break
                if match.end() > cut:
                    cut = match.end()  # a whole secret straddles the cut: emit it masked
                    break
            emit = self._pattern.sub(MASK, text[:cut])
        self._pending = text[cut:]
        if emit:
            self._out.write(emit.encode("utf-8"))
            self._out.flush()

    def close(self) -> None:
        self.write(b"", final=True)
