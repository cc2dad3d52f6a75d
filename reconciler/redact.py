"""Secret redaction shared by logs, run log tails and status files.

Values are registered when they are read (secretEnv, Git passwords, webhook secrets) and replaced
wherever text leaves the process. Short values are not registered: replacing every `1` or `true`
would mangle logs while protecting nothing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "****"
MIN_SECRET_LENGTH = 4


def masked_values(values: Iterable[str]) -> list[str]:
    """What to mask for these secret values (each as given and stripped, when long enough),
    longest first, so a secret that contains another is masked whole."""
    found = {
        candidate
        for value in values
        for candidate in (value, value.strip())
        if len(candidate) >= MIN_SECRET_LENGTH
    }
    return sorted(found, key=len, reverse=True)


def pattern_for(values: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression matching any of `values` (from `masked_values`), or None."""
    ordered = list(values)
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


class Redactor:
    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*values)

    def add(self, *values: str) -> None:
        with self._lock:
            before = len(self._values)
            self._values.update(masked_values(values))
            if len(self._values) != before:
                self._pattern = pattern_for(masked_values(self._values))

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text

    def __len__(self) -> int:
        return len(self._values)


redactor = Redactor()
"""The process-wide redactor: everything the daemon reads as secret is added here."""
