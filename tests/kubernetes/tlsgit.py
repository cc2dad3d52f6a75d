"""Smart HTTP over TLS for the clone script's tests: the real `git http-backend` behind the test
server of tests/support, with a self-signed certificate (made by `openssl`) for `127.0.0.1` and
`localhost`, and optionally a redirect from one of those names to the other, as a server that
wants the credentials of another host would send."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.support.githttp import GitHTTPServer


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key valid for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out",
         str(cert), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


class _Redirecting:
    """Sends every request made to `from_host` on to `to_host`, path and query kept."""

    def __init__(self, app: Callable[..., Iterable[bytes]], from_host: str, to_host: str):
        self.app = app
        self.from_host = from_host
        self.to_host = to_host

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_HOST", "").split(":")[0] != self.from_host:
            return self.app(environ, start_response)
        query = environ.get("QUERY_STRING", "")
        port = environ["SERVER_PORT"]
        target = f"https://{self.to_host}:{port}{environ.get('PATH_INFO', '')}"
        start_response("302 Found", [("Location", target + (f"?{query}" if query else ""))])
        return [b""]


class TLSGitServer(GitHTTPServer):
    """`GitHTTPServer` on https; `redirect=("localhost", "127.0.0.1")` sends what is asked of
    the first name to the second."""

    def __init__(self, root: Path, certs: Path, *, username: str | None = None,
                 password: str | None = None, redirect: tuple[str, str] | None = None) -> None:
        super().__init__(root, username=username, password=password)
        self.cert, self.key = self_signed(certs)
        self._redirect = redirect

    def url(self, name: str, *, userinfo: str | None = None, host: str = "127.0.0.1") -> str:
        auth = f"{userinfo}@" if userinfo else ""
        return f"https://{auth}{host}:{self.port}/{name}"

    def __enter__(self) -> TLSGitServer:
        super().__enter__()
        server = self._server
        assert server is not None
        if self._redirect is not None:
            server.set_app(_Redirecting(self.app, *self._redirect))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        return self
