"""Secret redaction shared by logs, run log tails, status files and the run logs on disk.

Values are registered when they are read (secretEnv, Git passwords, webhook secrets) and replaced
wherever text leaves the process. A program rarely prints a secret only as it is: Terraform
quotes it (`"a\\"b"`), a JSON log escapes it, a shell trace quotes it, a URL encodes it, a
client sends it base64-encoded, a key is printed one line at a time. `secret_forms` is the one
definition of the strings that mask a secret; every redactor and the streaming masker of run
logs (`executors/local/masking.py`) use it.

Short values are not masked: replacing every `1` or `true` would mangle logs while protecting
nothing. The bounds are `MIN_SECRET_LENGTH` for a value and its escaped forms, `MIN_LINE_LENGTH`
for one line of a multi-line value (so `-----` or `}` are not masked everywhere) and
`MIN_ENCODED_LENGTH` for a base64 form (shorter ones would match unrelated base64 text).

Matching is one compiled regular expression over all forms, shaped as a trie (forms sharing a
prefix share one branch), so the cost per character of text does not grow with the number of
secrets. Overlapping matches are merged: each masked region becomes one `MASK`.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import re
import shlex
import threading
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

MASK = "****"
MIN_SECRET_LENGTH = 4
MIN_LINE_LENGTH = 6
MIN_ENCODED_LENGTH = 8
_HEAD_LENGTH = 256
"""Longer forms (a certificate bundle) are found by their first characters and then compared
whole: the pattern stays small, however long a secret is."""

_SHELL_SAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII)
_HTML_SAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
              "\u2028": "\\u2028", "\u2029": "\\u2029"}
_HCL = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters of a base64 group that depend on the bytes before the secret, by the secret's
# offset in its 3-byte group; and how many trailing characters its last partial group fixes.
_B64_LEADING = (0, 2, 3)
_B64_TRAILING = (0, 1, 2)


def _json_inner(text: str, *, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


def _hcl_inner(text: str, *, templates: bool) -> str:
    escaped = "".join(_HCL.get(ch, ch) for ch in text)
    return escaped.replace("${", "$${").replace("%{", "%%{") if templates else escaped


def _escaped(text: str) -> set[str]:
    """The value as printed inside quotes or escaped: JSON (`json.dumps`, `\\uXXXX` for
    non-ASCII, Go's HTML-safe escapes, `\\/`), shell (`shlex.quote`, `'\\''`, backslashes)
    and Terraform/HCL strings (with and without template escapes). Quoted forms are masked
    inside their quotes, which stay: `"****"` keeps a JSON line valid."""
    plain = _json_inner(text, ascii_only=False)
    found = {
        text,
        plain,
        _json_inner(text, ascii_only=True),
        "".join(_HTML_SAFE.get(ch, ch) for ch in plain),
        plain.replace("/", "\\/"),
        _hcl_inner(text, templates=True),
        _hcl_inner(text, templates=False),
        text.replace("'", "'\\''"),
        text.replace("'", "'\"'\"'"),
    }
    quoted = shlex.quote(text)
    if quoted.startswith("'") and quoted.endswith("'"):
        found.add(quoted[1:-1])
    if "\n" not in text:
        found.add(_SHELL_SAFE.sub(lambda m: "\\" + m.group(0), text))
    # Escaped twice: a JSON document (or a Terraform message) carried inside a JSON string.
    found |= {_json_inner(form, ascii_only=False) for form in list(found)}
    return found


def _url_encoded(text: str) -> set[str]:
    return {quote(text), quote(text, safe=""), quote_plus(text), quote_plus(text, safe="/")}


def _base64_forms(data: bytes) -> set[str]:
    """The value base64-encoded on its own (with and without padding), and the characters
    that encode it wherever it sits inside a longer base64 stream: at each of the three
    offsets in a 3-byte group, the characters that depend on the value's bytes alone."""
    encoded = {base64.b64encode(data).decode()}
    for offset in range(3):
        stream = base64.b64encode(b"\0" * offset + data).decode().rstrip("=")
        total = offset + len(data)
        end = 4 * (total // 3) + _B64_TRAILING[total % 3]
        encoded.add(stream[_B64_LEADING[offset]:end])
    encoded |= {form.rstrip("=") for form in encoded}
    encoded |= {form.replace("+", "-").replace("/", "_") for form in encoded}
    return {form for form in encoded if len(form) >= MIN_ENCODED_LENGTH}


def secret_forms(value: str) -> frozenset[str]:
    """Every string that masks `value` wherever it is printed: the value itself (and without
    surrounding whitespace), its escaped and URL-encoded forms, its base64 forms, and each line
    of a multi-line value with that line's escaped forms."""
    forms: set[str] = set()
    for text in {value, value.strip()}:
        if len(text) < MIN_SECRET_LENGTH:
            continue
        forms |= _escaped(text) | _url_encoded(text)
        forms |= _base64_forms(text.encode("utf-8"))
    lines = value.splitlines()
    if len(lines) > 1:
        for line in {line.strip() for line in lines}:
            if len(line) >= MIN_LINE_LENGTH:
                forms |= _escaped(line)
    return frozenset(form for form in forms if len(form) >= MIN_SECRET_LENGTH)


def masked_values(values: Iterable[str]) -> list[str]:
    """The forms of all these secret values, longest first."""
    found: set[str] = set()
    for value in values:
        found |= secret_forms(value)
    return sorted(found, key=lambda form: (-len(form), form))


def _shared_prefix(first: str, last: str) -> str:
    """The prefix all words between `first` and `last` (sorted) share: theirs."""
    low, high = 0, min(len(first), len(last))
    while low < high:  # by halves: a secret may be 100 KB long
        middle = (low + high + 1) // 2
        if first[:middle] == last[:middle]:
            low = middle
        else:
            high = middle - 1
    return first[:low]


def _trie_pattern(words: list[str]) -> str:
    """The regular expression of a trie of `words` (sorted, distinct): one branch per first
    character, the prefix its words share as one literal, and an optional (greedy) tail where a
    word ends inside another, so the longest word at a position wins. Built from slices of the
    words, not one node per character: a long secret costs its length, not objects."""
    terminal = bool(words) and words[0] == ""
    branches = []
    for _, group in itertools.groupby(words[1:] if terminal else words, key=lambda w: w[0]):
        members = list(group)
        shared = _shared_prefix(members[0], members[-1])
        branches.append(re.escape(shared) + _trie_pattern([w[len(shared):] for w in members]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
    return f"(?:{body})?" if terminal else body


class Matcher:
    """Finds the forms of a set of secrets in text; immutable once built."""

    def __init__(self, forms: Iterable[str]) -> None:
        self.forms = sorted(set(forms))
        self.longest = max(map(len, self.forms), default=0)
        heads = sorted({form[:_HEAD_LENGTH] for form in self.forms})
        self._pattern = re.compile(_trie_pattern(heads)) if heads else None
        self._long: dict[str, list[str]] = {}
        for form in sorted(self.forms, key=len, reverse=True):
            if len(form) > _HEAD_LENGTH:
                self._long.setdefault(form[:_HEAD_LENGTH], []).append(form)
        # Short beginnings of forms: a cheap first test of whether text can start one.
        self._starts = {form[:size] for form in self.forms for size in range(1, 9)}

    def __bool__(self) -> bool:
        return self._pattern is not None

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        """The regions of `text` to mask, in order and disjoint: overlapping matches are
        one region."""
        pattern = self._pattern
        if pattern is None:
            return
        position = 0
        while (found := pattern.search(text, position)) is not None:
            start, end = found.start(), self._end(text, found)
            # A form starting inside this one may reach further. What the pattern matches is
            # at most a head long: one starting before `end` ends before `end + _HEAD_LENGTH`.
            probe = start + 1
            while (inner := pattern.search(text, probe, end + _HEAD_LENGTH)) is not None:
                if inner.start() >= end:
                    break
                end = max(end, self._end(text, inner))
                probe = inner.start() + 1
            yield start, end
            position = end

    def _end(self, text: str, found: re.Match[str]) -> int:
        """Where the longest form matched at `found` ends. For a long form, found by its
        beginning: as far as the text goes on as that form does (a long value cut short is
        masked up to where it was cut)."""
        start, end = found.span()
        for form in self._long.get(found.group(), ()):
            if text.startswith(form, start):
                return start + len(form)
            end = max(end, start + len(_shared_prefix(text[start:start + len(form)], form)))
        return end

    def mask(self, text: str, spans: Iterable[tuple[int, int]] | None = None) -> str:
        """`text` with each region (default: `spans(text)`) replaced by one `MASK`."""
        parts = []
        position = 0
        for start, end in self.spans(text) if spans is None else spans:
            parts += [text[position:start], MASK]
            position = end
        if not parts:
            return text
        parts.append(text[position:])
        return "".join(parts)

    def undecided(self, text: str) -> int:
        """Length of the longest ending of `text` that is the start (not the whole) of some
        form: what may still become a secret when more text follows."""
        for start in range(max(0, len(text) - self.longest + 1), len(text)):
            if text[start:start + 8] not in self._starts:
                continue
            ending = text[start:]
            # Forms beginning with `ending` sort together, from the first one not below it.
            index = bisect.bisect_left(self.forms, ending)
            if index < len(self.forms) and self.forms[index] == ending:
                index += 1  # the whole form is decided: masked now, unless a longer one follows
            if index < len(self.forms) and self.forms[index].startswith(ending):
                return len(text) - start
        return 0


class Redactor:
    """Masks the forms of every value added so far; safe to use from any thread."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._forms: set[str] = set()
        self._matcher = Matcher(())
        self._stale = False
        self.add(*values)

    def add(self, *values: str) -> None:
        with self._lock:
            for value in values:
                if value not in self._values:
                    self._values.add(value)
                    fresh = secret_forms(value) - self._forms
                    if fresh:
                        self._forms |= fresh
                        self._stale = True

    @property
    def matcher(self) -> Matcher:
        """The matcher over every form added so far, rebuilt only after an `add`."""
        if self._stale:
            with self._lock:
                if self._stale:
                    self._matcher = Matcher(self._forms)
                    self._stale = False
        return self._matcher

    def __call__(self, text: str) -> str:
        if not text:
            return text
        matcher = self.matcher
        return matcher.mask(text) if matcher else text

    def __len__(self) -> int:
        return len(self._forms)


redactor = Redactor()
"""The process-wide redactor: everything the daemon reads as secret is added here."""
