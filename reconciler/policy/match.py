"""How the policy's lists are compared with what a declaration asks for.

Names (namespaces, service accounts, secrets) are matched against globs in which only `*` is
special. Images and repository URLs are matched by their parsed parts, never as raw strings:
a prefix `registry.example.io/` names a registry host, so `registry.example.io.evil.com/x`
is on another host and does not match, and `https://git.example.io/org` names the path
segment `org`, so `https://git.example.io/org-evil/x` does not match. Anything that cannot be
parsed unambiguously (userinfo tricks, encoded separators, dot segments, backslashes,
non-ASCII hosts) matches nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from urllib.parse import unquote, urlsplit

_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def glob_matches(pattern: str, value: str) -> bool:
    """`pattern` matches all of `value`; `*` stands for any run of characters, everything
    else (`?`, `[`, `.`) for itself."""
    compiled = _GLOB_CACHE.get(pattern)
    if compiled is None:
        compiled = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
        _GLOB_CACHE[pattern] = compiled
    return compiled.fullmatch(value) is not None


def any_glob(patterns: Iterable[str], value: str) -> bool:
    return any(glob_matches(p, value) for p in patterns)


# Image references, after the grammar of distribution/reference.

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_IMAGE = re.compile(
    rf"^(?P<name>(?:(?P<host>{_HOST})/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?\Z"
)
_PREFIX_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
DOCKER_HUB = "docker.io"


@dataclass(frozen=True, slots=True)
class ImageName:
    host: str
    """Registry host (lower case) with its port, if any."""
    path: tuple[str, ...]
    """Repository path components (`library/python` for `python`)."""
    tag: str | None = None
    digest: str | None = None


def _is_host(first: str) -> bool:
    # Docker's rule: the first component names a registry when it looks like a host.
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def _canonical_host(host: str) -> str:
    host = host.lower()
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


def _split_host(name: str) -> tuple[str, tuple[str, ...]]:
    first, _, rest = name.partition("/")
    if rest and _is_host(first):
        host, path = _canonical_host(first), rest.split("/")
    else:
        host, path = DOCKER_HUB, name.split("/")
    if host == DOCKER_HUB and len(path) == 1:
        path = ["library", *path]
    return host, tuple(path)


def parse_image(reference: str) -> ImageName | None:
    """The parts of an image reference; None when it is not a valid one."""
    if len(reference) > 4096:
        return None
    match = _IMAGE.match(reference)
    if match is None:
        return None
    host, path = _split_host(match["name"])
    return ImageName(host, path, match["tag"], match["digest"])


def parse_image_prefix(prefix: str) -> ImageName | None:
    """A policy's image prefix: a registry (`registry.example.io/`), a repository path under
    it (`registry.example.io/team/`, `python`), or one exact reference with its tag or digest
    (`python:3.12`). None when it is none of these."""
    text = prefix.rstrip("/")
    first, _, rest = text.partition("/")
    if not text or re.fullmatch(_HOST, first) is None:
        return parse_image(text) if text else None
    lone_host = "." in first or first.split(":")[0] == "localhost" or first.startswith("[")
    if rest and _is_host(first):
        if _PREFIX_PATH.match(rest):
            return ImageName(_canonical_host(first), tuple(rest.split("/")))
        return parse_image(text)
    if not rest and lone_host:
        return ImageName(_canonical_host(first), ())
    if _PREFIX_PATH.match(text):
        return ImageName(*_split_host(text))
    return parse_image(text)


def image_allowed(reference: str, prefixes: Iterable[ImageName]) -> bool:
    image = parse_image(reference)
    if image is None:
        return False
    for prefix in prefixes:
        if image.host != prefix.host or image.path[: len(prefix.path)] != prefix.path:
            continue
        if prefix.tag is None and prefix.digest is None:
            return True
        if image.path == prefix.path and (image.tag, image.digest) == (prefix.tag, prefix.digest):
            return True
    return False


# Repository URLs.

_SCHEMES = {"https": "https", "http": "http", "ssh": "ssh", "git+ssh": "ssh",
            "ssh+git": "ssh", "git": "git", "file": "file"}
_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[^@/:\s\[\]]+):(?P<path>.+)\Z")
_ASCII_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")
_ENCODED_SEPARATOR = re.compile(r"%(2[eEfF]|5[cC]|25|0[0-9a-fA-F]|1[0-9a-fA-F]|7[fF])")


@dataclass(frozen=True, slots=True)
class RepositoryURL:
    scheme: str
    host: str
    port: int | None
    user: str | None
    path: tuple[str, ...]


def _segments(path: str) -> tuple[str, ...] | None:
    """Path segments with empty ones dropped and a final `.git` removed; None when the path
    could be read differently by a server (encoded separators or dots, dot segments)."""
    if _ENCODED_SEPARATOR.search(path):
        return None
    segments = [unquote(s) for s in path.split("/") if s]
    if any(s in (".", "..") or not s.isprintable() for s in segments):
        return None
    if segments and segments[-1].endswith(".git"):
        segments[-1] = segments[-1][: -len(".git")]
        if not segments[-1]:
            return None
    return tuple(segments)


def parse_repository(url: str) -> RepositoryURL | None:
    """The parts of a clone URL (`scheme://[user@]host[:port]/path` or scp-like
    `user@host:path`); None when it is not one that can be compared safely."""
    if not url or not url.isprintable() or any(c in url for c in "\\ \t") or not url.isascii():
        return None
    if "://" not in url:
        if url.startswith("/"):
            return _repository("file", "", None, None, url)
        scp = _SCP_LIKE.match(url)
        if scp is None or url.startswith("-"):
            return None
        return _repository("ssh", scp["host"], None, scp["user"], scp["path"])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or parts.query or parts.fragment or parts.netloc.count("@") > 1:
        return None
    if scheme == "file":
        return _repository("file", "", None, None, parts.path) if not parts.netloc else None
    if parts.password is not None:
        return None
    host = parts.hostname or ""
    return _repository(scheme, host, port, parts.username, parts.path)


def _repository(
    scheme: str, host: str, port: int | None, user: str | None, path: str
) -> RepositoryURL | None:
    host = host.lower()
    if scheme != "file" and not (_ASCII_HOST.match(host) or _is_ip_address(host)):
        return None
    if user is not None and (not user or "%" in user or user.startswith("-")):
        return None
    segments = _segments(path)
    if segments is None:
        return None
    return RepositoryURL(scheme, host, port or _PORTS.get(scheme), user, segments)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def repository_allowed(url: str, prefixes: Iterable[RepositoryURL]) -> bool:
    repository = parse_repository(url)
    if repository is None:
        return False
    for prefix in prefixes:
        same_place = (repository.scheme, repository.host, repository.port) == (
            prefix.scheme, prefix.host, prefix.port)
        if not same_place or (prefix.user is not None and prefix.user != repository.user):
            continue
        if repository.path[: len(prefix.path)] == prefix.path:
            return True
    return False


# Resource quantities.

_SUFFIXES = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?\Z")


@lru_cache(maxsize=1024)
def quantity(value: str) -> Decimal | None:
    """A Kubernetes resource quantity (`100m`, `1.5`, `512Mi`, `1e3`) as a number; None when
    it is not one."""
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            exponent = int(suffix[1:])
            if abs(exponent) > 30:
                return None
            return Decimal(number) * Decimal(10) ** exponent
        return Decimal(number) * _SUFFIXES[suffix]
    except (InvalidOperation, KeyError):
        return None
