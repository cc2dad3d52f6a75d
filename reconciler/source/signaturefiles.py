"""Reading the operator's `allowed_signers` file, with located errors.

The format is ssh-keygen(1)'s ALLOWED SIGNERS: `principals [options] keytype base64-key
[comment]`, options `cert-authority`, `namespaces="…"`, `valid-after=…`, `valid-before=…`.
`ssh-keygen` skips a line it cannot parse and carries on; a daemon deciding what runs must not
lose a signer to a typo unnoticed, so every problem is reported as `path:line:col: field:
message` and the file is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from pathlib import Path

from reconciler.source.verdicts import SignatureConfigError

FIELD = "allowedSigners"
MAX_BYTES = 1 << 20
KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})
_TIMESTAMP = re.compile(r"\d{8}(\d{4}(\d{2})?)?Z?")
_OPTIONS = frozenset({"cert-authority", "namespaces", "valid-after", "valid-before"})


def read_allowed_signers(path: Path) -> str:
    """The file's text once every line is checked; raises SignatureConfigError listing every
    problem, or when the file is unreadable or lists no key."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SignatureConfigError(
            f"{path}: {FIELD}: cannot read the allowed signers file: {err.strerror}") from None
    if len(data) > MAX_BYTES:
        raise SignatureConfigError(f"{path}: {FIELD}: larger than {MAX_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError as err:
        raise SignatureConfigError(f"{path}: {FIELD}: not UTF-8 text ({err.reason})") from None
    problems: list[str] = []
    keys = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found = check_line(line)
        if found is None:
            keys += 1
        else:
            column, message = found
            problems.append(f"{path}:{number}:{column}: {FIELD}: {message}")
    if problems:
        raise SignatureConfigError("\n".join(problems))
    if keys == 0:
        raise SignatureConfigError(f"{path}: {FIELD}: lists no key: no commit could be verified")
    return text


def _tokens(line: str) -> list[tuple[int, str]]:
    """Whitespace-separated fields (double quotes keep spaces) with their 1-based columns."""
    out: list[tuple[int, str]] = []
    start: int | None = None
    quoted = False
    for index, char in enumerate(line + " "):
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            if start is not None:
                out.append((start + 1, line[start:index]))
                start = None
        elif start is None:
            start = index
    return out


def check_line(line: str) -> tuple[int, str] | None:
    """None for a good line, else the column and message of its first problem."""
    fields = _tokens(line)
    if line.count('"') % 2:
        return line.index('"') + 1, "unterminated double quote"
    principals_column, principals = fields[0]
    if principals.strip('"') == "" or ",," in principals or principals.endswith(","):
        return principals_column, "empty principal"
    rest = fields[1:]
    if rest and rest[0][1] not in KEY_TYPES:
        problem = _check_options(*rest[0])
        if problem is not None:
            return problem
        rest = rest[1:]
    if not rest:
        return len(line.rstrip()) + 1, "missing the key type and key after the principals"
    type_column, key_type = rest[0]
    if key_type not in KEY_TYPES:
        return type_column, f"unknown key type {key_type!r} (expected one of " \
                            f"{', '.join(sorted(KEY_TYPES))})"
    if len(rest) < 2:
        return len(line.rstrip()) + 1, f"missing the base64 key after {key_type}"
    return _check_key(key_type, *rest[1])


def _check_options(column: int, options: str) -> tuple[int, str] | None:
    offset = 0
    for option in _split_options(options):
        name, _, value = option.partition("=")
        where = column + offset
        offset += len(option) + 1
        lowered = name.lower()
        if lowered not in _OPTIONS:
            return where, f"unknown option {name!r} (or an unknown key type)"
        if lowered == "cert-authority":
            if value:
                return where, "cert-authority takes no value"
            continue
        value = value.strip('"')
        if not value:
            return where, f"{lowered} needs a value"
        if lowered.startswith("valid-") and not _TIMESTAMP.fullmatch(value):
            return where, f"{lowered}: {value!r} is not YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]"
    return None


def _split_options(options: str) -> list[str]:
    """Comma-separated, commas inside double quotes kept (`namespaces="git,file"`)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in options:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _check_key(key_type: str, column: int, key: str) -> tuple[int, str] | None:
    try:
        fields = _wire_strings(base64.b64decode(key, validate=True))
        embedded = fields[0].decode()
    except (binascii.Error, ValueError, IndexError, UnicodeDecodeError):
        return column, "the key is not valid base64 of an SSH public key"
    if embedded != key_type:
        return column, f"the key is a {embedded} key, not {key_type}"
    if len(fields) < 2:
        return column, "the key is truncated"
    return None


def _wire_strings(blob: bytes) -> list[bytes]:
    """The length-prefixed strings a public key blob is made of; ValueError unless they fill
    it exactly (a truncated or padded key)."""
    fields, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ValueError("truncated")
        (size,) = struct.unpack_from(">I", blob, offset)
        offset += 4 + size
        if offset > len(blob):
            raise ValueError("truncated")
        fields.append(blob[offset - size:offset])
    return fields
