"""Smart HTTP for tests: the real `git http-backend` as CGI behind a threaded wsgiref server
on 127.0.0.1, with optional basic auth."""

from __future__ import annotations

import base64
import binascii
import socketserver
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests.support.gitservers import GIT, git_env


def _read_body(environ: Mapping[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        # wsgiref hands the raw socket stream over; libgit2 streams push packs in chunks.
        body = bytearray()
        while True:
            size = int(stream.readline().split(b";")[0].strip(), 16)
            if size == 0:
                stream.readline()
                return bytes(body)
            body += stream.read(size)
            stream.readline()
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return bytes(stream.read(length)) if length else b""


def _check_basic_auth(header: str, username: str, password: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, secret = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return user == username and secret == password


@dataclass(frozen=True)
class HTTPRequest:
    """What the server saw of one request; credentials are never recorded."""

    method: str
    path: str
    status: int
    authenticated: bool


class _GitHTTPApp:
    def __init__(self, root: Path, username: str | None, password: str | None) -> None:
        self.root = root
        self.username = username
        self.password = password
        self.requests: list[HTTPRequest] = []
        self._lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        authed = self.username is None or _check_basic_auth(
            environ.get("HTTP_AUTHORIZATION", ""), self.username, self.password or ""
        )
        if not authed:
            self._record(method, path, 401, authed=False)
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"authentication required\n"]
        status, headers, body = self._backend(environ, _read_body(environ))
        self._record(method, path, int(status.split()[0]), authed=self.username is not None)
        start_response(status, headers)
        return [body]

    def _record(self, method: str, path: str, status: int, *, authed: bool) -> None:
        with self._lock:
            self.requests.append(HTTPRequest(method, path, status, authed))

    def _backend(
        self, environ: Mapping[str, Any], body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        env = git_env(
            GIT_PROJECT_ROOT=str(self.root),
            GIT_HTTP_EXPORT_ALL="1",
            REQUEST_METHOD=environ["REQUEST_METHOD"],
            PATH_INFO=environ.get("PATH_INFO", ""),
            QUERY_STRING=environ.get("QUERY_STRING", ""),
            CONTENT_TYPE=environ.get("CONTENT_TYPE", ""),
            CONTENT_LENGTH=str(len(body)),
            REMOTE_ADDR=environ.get("REMOTE_ADDR", "127.0.0.1"),
            REMOTE_USER=self.username or "anonymous",
            GIT_PROTOCOL=environ.get("HTTP_GIT_PROTOCOL", ""),
            HTTP_CONTENT_ENCODING=environ.get("HTTP_CONTENT_ENCODING", ""),
        )
        proc = subprocess.run(
            [GIT, "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, sep, rest = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, _, rest = proc.stdout.partition(b"\n\n")
        status = "200 OK"
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name.strip(), value.strip()))
        return status, headers, rest


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded by the app, without headers; nothing goes to stderr."""


class GitHTTPServer:
    """Smart HTTP (`git http-backend`) for every repository below `root`, with basic auth when
    a username is given. `requests` lists what the server saw, for assertions."""

    def __init__(self, root: Path, *, username: str | None = None, password: str | None = None):
        self.root = root
        self.app = _GitHTTPApp(root, username, password)
        self.port = 0
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> list[HTTPRequest]:
        return list(self.app.requests)

    def url(self, name: str, *, userinfo: str | None = None) -> str:
        auth = f"{userinfo}@" if userinfo else ""
        return f"http://{auth}127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitHTTPServer:
        self.root.mkdir(parents=True, exist_ok=True)
        server = make_server(
            "127.0.0.1", 0, self.app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
