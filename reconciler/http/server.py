"""HTTP on `--listen`: `/metrics`, `/healthz`, `/readyz` and `POST /hooks/git` (DESIGN §4).

The server only reports and enqueues: a valid push webhook calls `on_trigger`, which the daemon
turns into a cycle on its own worker. Webhooks need a shared secret; a request that does not
prove it knows the secret gets 401 and triggers nothing (`reconciler.http.webhooks` checks it).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Collection, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

from loguru import logger
from pydantic import SecretStr

from reconciler import __version__
from reconciler.http.api import PREFIX, Api
from reconciler.http.webhooks import authenticate, classify, clean, delivery, identify
from reconciler.metrics import Metrics, WebhookResult
from reconciler.redact import redactor
from reconciler.settings import Settings

HOOK_PATH: Final = "/hooks/git"
MAX_BODY_BYTES: Final = 1 << 20
CheckResult = bool | tuple[bool, str]
Check = Callable[[], CheckResult]
"""A health or readiness probe: True/False, or (ok, reason) to explain a failure."""


def parse_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:9100`, `[::1]:9100`, `:9100` (loopback) or `0.0.0.0:0` (a free port)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


# -- the server -----------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    # Non-daemon request threads are the ones `server_close()` joins: nothing outlives stop().
    daemon_threads = False
    app: Server

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked before its thread starts, so stop() can always reach a connection.
        self.app._track(request, True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.app._track(request, False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called inside the `except` of a request thread; the default prints to raw stderr.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away or stalled: routine
            logger.debug(f"http: connection from {client_address[0]} ended: {error!r}")
        else:
            logger.opt(exception=error).error("http: request handler failed")


class _IPv6HTTPServer(_HTTPServer):
    address_family = socket.AF_INET6


class Server:
    """The daemon's HTTP endpoints on a background thread. `start()` binds (port 0 picks a
    free port; see `address`), `stop()` closes the socket and joins every thread."""

    def __init__(
        self,
        listen: str | tuple[str, int],
        *,
        metrics: Metrics,
        health: Check,
        ready: Check,
        on_trigger: Callable[[str], None],
        webhook_secret: SecretStr | str | None = None,
        branches: Collection[str] = (),
        max_body_bytes: int = MAX_BODY_BYTES,
        request_timeout: float = 10.0,
        api: Api | None = None,
    ) -> None:
        self.listen = parse_listen(listen) if isinstance(listen, str) else listen
        self.metrics = metrics
        self.health = health
        self.ready = ready
        self.on_trigger = on_trigger
        if isinstance(webhook_secret, SecretStr):
            webhook_secret = webhook_secret.get_secret_value()
        # A secret file usually ends with a newline that is not part of the secret.
        secret = (webhook_secret or "").strip()
        if secret:
            redactor.add(secret)
        self.secret: bytes | None = secret.encode() if secret else None
        self.refs = frozenset(b if b.startswith("refs/") else f"refs/heads/{b}" for b in branches)
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.api = api
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        metrics: Metrics,
        health: Check,
        ready: Check,
        on_trigger: Callable[[str], None],
        api: Api | None = None,
    ) -> Server | None:
        """The server `--listen` asks for, or None when it is empty (no HTTP)."""
        address = settings.listen_address
        if address is None:
            return None
        return cls(address, metrics=metrics, health=health, ready=ready, on_trigger=on_trigger,
                   webhook_secret=settings.webhook_secret, branches=(settings.branch,),
                   api=api)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); only valid after `start()`."""
        if self._httpd is None:
            raise RuntimeError("the HTTP server is not started")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("the HTTP server is already started")
        host, port = self.listen
        cls = _IPv6HTTPServer if ":" in host else _HTTPServer
        try:
            httpd = cls((host, port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        httpd.app = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="reconciler-http",
            daemon=True,
        )
        self._thread.start()
        logger.bind(url=self.url, webhooks=self.secret is not None).info("HTTP server listening")

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        # Unblock handlers waiting on a slow client, so closing does not wait for its timeout.
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()  # closes the socket and joins the request threads
        thread.join()
        self._httpd = self._thread = None
        logger.debug("HTTP server stopped")

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, active: bool) -> None:
        with self._lock:
            (self._connections.add if active else self._connections.discard)(conn)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = f"reconciler/{__version__}"
    sys_version = ""

    ROUTES: Final[Mapping[str, Mapping[str, str]]] = {
        "/metrics": {"GET": "_metrics", "HEAD": "_metrics"},
        "/healthz": {"GET": "_healthz", "HEAD": "_healthz"},
        "/readyz": {"GET": "_readyz", "HEAD": "_readyz"},
        HOOK_PATH: {"POST": "_hook"},
    }

    def setup(self) -> None:
        super().setup()
        # A client that stops sending must not hold a thread forever.
        self.connection.settimeout(self.server.app.request_timeout)

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path == PREFIX or path.startswith(PREFIX + "/"):
            api = self.server.app.api
            if api is None:  # off: as if there were no such path
                self._send(HTTPStatus.NOT_FOUND, "not found\n")
            else:
                api.handle(self, path)
            return
        methods = self.ROUTES.get(path)
        if methods is None:
            self._send(HTTPStatus.NOT_FOUND, f"not found: {clean(path, 100)}\n")
        elif self.command not in methods:
            allow = ", ".join(methods)
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, f"use {allow}\n", {"Allow": allow})
        else:
            getattr(self, methods[self.command])()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def _send(
        self,
        status: HTTPStatus,
        body: bytes | str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        all_headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        for name, value in all_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _metrics(self) -> None:
        body, headers = self.server.app.metrics.render(
            self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", "")
        )
        self._send(HTTPStatus.OK, body, headers)

    def _probe(self, check: Check, prefix: str) -> None:
        try:
            result = check()
        except Exception as exc:  # a probe must answer, not kill the request thread
            logger.opt(exception=exc).warning("probe failed")
            result = (False, f"probe failed: {type(exc).__name__}")
        ok, reason = result if isinstance(result, tuple) else (result, "")
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        text = "ok" if ok else prefix
        self._send(status, f"{text}: {redactor(reason)}\n" if reason else f"{text}\n")

    def _healthz(self) -> None:
        self._probe(self.server.app.health, "unhealthy")

    def _readyz(self) -> None:
        self._probe(self.server.app.ready, "not ready")

    def _hook(self) -> None:
        app = self.server.app
        provider = identify(self.headers)
        log = logger.bind(
            provider=provider, client=self.client_address[0], delivery=delivery(self.headers)
        )

        def answer(status: HTTPStatus, result: WebhookResult, message: str) -> None:
            app.metrics.observe_webhook(provider, result)
            self._send(status, message + "\n")

        if app.secret is None:
            log.warning("webhook refused: no webhook secret configured")
            answer(HTTPStatus.FORBIDDEN, "disabled",
                   "webhooks are disabled: start the daemon with --webhook-secret-file")
            return
        body = self._read_body(answer)
        if body is None:
            return
        problem = authenticate(provider, self.headers, body, app.secret)
        if problem:
            log.warning(f"webhook refused: {problem}")
            answer(HTTPStatus.UNAUTHORIZED, "unauthorized", f"unauthorized: {problem}")
            return
        trigger, what = classify(provider, self.headers, body, app.refs)
        if not trigger:
            log.info(f"webhook ignored: {what}")
            answer(HTTPStatus.OK, "ignored", f"ignored: {what}")
            return
        try:
            app.on_trigger(f"webhook: {provider} {what}")
        except Exception as exc:  # the daemon's queue failing must not kill the server
            log.opt(exception=exc).error("webhook accepted but the cycle could not be queued")
            answer(HTTPStatus.INTERNAL_SERVER_ERROR, "error", "could not queue a cycle")
            return
        log.info(f"webhook accepted: {what}")
        answer(HTTPStatus.ACCEPTED, "accepted", f"accepted: {what}; a cycle is queued")

    def _read_body(self, answer: Callable[[HTTPStatus, WebhookResult, str], None]) -> bytes | None:
        """The raw body, or None after answering a request whose size is missing, wrong or
        over the cap (the body of an oversized request is never read)."""
        header = (self.headers.get("Content-Length") or "").strip()
        limit = self.server.app.max_body_bytes
        body = b""
        if not header.isdigit():
            status, message = HTTPStatus.LENGTH_REQUIRED, "a numeric Content-Length is required"
        elif int(header) > limit:
            status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            message = f"body of {header} bytes is over the limit of {limit}"
        else:
            with contextlib.suppress(OSError):  # a client that stalls past the timeout
                body = self.rfile.read(int(header))
            if len(body) == int(header):
                return body
            status, message = HTTPStatus.BAD_REQUEST, "body shorter than Content-Length"
        self.close_connection = True
        answer(status, "invalid", message)
        return None

    def log_message(self, format: str, *args: Any) -> None:
        # Requests and malformed request lines go to the debug log, not to raw stderr.
        # No format arguments: the request line is untrusted and may hold braces.
        logger.bind(client=self.client_address[0]).debug(clean("http: " + format % args, 400))
