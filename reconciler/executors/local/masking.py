"""Masking secret values in a byte stream as it is written (a run's output into its log).

The forms masked are `redact.secret_forms` of each value, exactly as the daemon's own redactor
masks them: the log on disk is what `reconciler logs` prints, with no daemon around to mask it
again.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from typing import BinaryIO

from reconciler.redact import Matcher, masked_values

_MAX_PENDING = 1 << 20
"""Text held back at most. Only a run printing secret material without a break holds back more
than the longest form; past this, what is matched so far is written masked."""


class MaskingWriter:
    """Writes a byte stream as UTF-8 text with secret values masked, as it arrives.

    Output is written at once, except what could still become (part of) a secret with the next
    read: an ending that begins some form, and a masked region that such an ending may extend.
    That waits for the next read (or the end). The result is the same as masking the whole
    output at once, however it is split."""

    def __init__(self, out: BinaryIO, secrets: Iterable[str]) -> None:
        self._matcher = Matcher(masked_values(secrets))
        self._out = out
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _cut(self, text: str, spans: list[tuple[int, int]]) -> int:
        """Where to stop writing: before any undecided ending, and never inside a region."""
        cut = len(text) - self._matcher.undecided(text)
        for start, end in spans:
            if start < cut < end:
                return end if start == 0 and len(text) > _MAX_PENDING else start
        return cut

    def write(self, data: bytes, *, final: bool = False) -> None:
        text = self._pending + self._decoder.decode(data, final=final)
        if not self._matcher:
            emit, self._pending = text, ""
        else:
            spans = list(self._matcher.spans(text))
            cut = len(text) if final else self._cut(text, spans)
            emit = self._matcher.mask(text[:cut], [s for s in spans if s[1] <= cut])
            self._pending = text[cut:]
        if emit:
            self._out.write(emit.encode("utf-8"))
            self._out.flush()

    def close(self) -> None:
        self.write(b"", final=True)
