"""Remote URLs: which transport, which host key name, and how to show them without secrets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from reconciler.source.errors import InvalidRemoteURLError

Scheme = Literal["file", "git", "http", "https", "ssh"]

_SCHEMES: dict[str, Scheme] = {
    "file": "file",
    "git": "git",
    "http": "http",
    "https": "https",
    "ssh": "ssh",
    "git+ssh": "ssh",
    "ssh+git": "ssh",
}
_DEFAULT_PORTS: dict[Scheme, int] = {"git": 9418, "http": 80, "https": 443, "ssh": 22}
# `user@host:path` or `host:path`, as scp and git accept them: a colon before any slash.
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>\[[^\]]+\]|[^:/\s]+):(?P<path>.+)$")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]*)@")


@dataclass(frozen=True)
class RemoteURL:
    """A parsed remote. `url` is what libgit2 connects to (HTTP user info removed, since
    credentials go through the credentials callback); `display` is safe to log."""

    scheme: Scheme
    url: str
    display: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names this host: `host`, or `[host]:port` off the default port."""
        host = self.host or ""
        if self.port in (None, 22):
            return host
        return f"[{host}]:{self.port}"

    def __str__(self) -> str:
        return self.display


def parse_remote_url(raw: str) -> RemoteURL:
    """Parse a remote given as a URL (file, git, http, https, ssh), an scp-like
    `user@host:path`, or a local path. Raises InvalidRemoteURLError with a one-line reason."""
    text = raw.strip()
    if not text:
        raise InvalidRemoteURLError("the repository URL is empty")
    if "://" in text:
        return _parse_url(text)
    scp = _SCP_LIKE.match(text)
    if scp and not text.startswith(("/", ".")):
        host = scp["host"].strip("[]")
        return RemoteURL(
            scheme="ssh", url=text, display=text, host=host, port=22, username=scp["user"]
        )
    path = Path(text).expanduser().absolute()
    return RemoteURL(scheme="file", url=str(path), display=str(path))


def _parse_url(text: str) -> RemoteURL:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidRemoteURLError(f"{redact_url(text)}: {exc}") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        supported = "file, git, http, https, ssh"
        raise InvalidRemoteURLError(
            f"{redact_url(text)}: unsupported URL scheme {parts.scheme!r} (expected {supported})"
        )
    if scheme == "file":
        if not parts.path:
            raise InvalidRemoteURLError(f"{text}: a file URL needs a path")
        return RemoteURL(scheme="file", url=text, display=text)
    host = parts.hostname
    if not host:
        raise InvalidRemoteURLError(f"{redact_url(text)}: the URL has no host")
    if not parts.path.strip("/"):
        raise InvalidRemoteURLError(f"{redact_url(text)}: the URL has no repository path")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    hostport = f"[{host}]" if ":" in host else host
    if port is not None:
        hostport += f":{port}"
    bare = urlunsplit((parts.scheme, hostport, parts.path, parts.query, ""))
    if scheme == "ssh":
        # The SSH user name is not a secret and libgit2 reads it from the URL.
        url = urlunsplit(("ssh", f"{username}@{hostport}" if username else hostport,
                          parts.path, parts.query, ""))
        if password is not None:
            raise InvalidRemoteURLError(
                f"{redact_url(text)}: put no password in an ssh URL; use a key file"
            )
        return RemoteURL(scheme="ssh", url=url, display=url, host=host,
                         port=port or _DEFAULT_PORTS["ssh"], username=username)
    return RemoteURL(
        scheme=scheme,
        url=bare,
        display=bare,
        host=host,
        port=port or _DEFAULT_PORTS[scheme],
        username=username,
        password=password,
    )


def redact_url(text: str) -> str:
    """Remove credentials from every URL in `text`: all user info of http(s) URLs (a token is
    often put where the user name goes) and `user:password@` of any other scheme."""

    def replace(match: re.Match[str]) -> str:
        scheme, userinfo = match["scheme"], match["userinfo"]
        if scheme.lower().startswith("http") or ":" in userinfo:
            return scheme
        return match[0]

    return _URL_USERINFO.sub(replace, text)
