"""The control API under `/api/v1/` on `--listen` (DESIGN §11): entries, their records, runs
and drift plans asked for now, and the live log of a run.

Off without a token file (every path answers 404). Every request must carry
`Authorization: Bearer <token>`; any other answers 401 with a body that says nothing more.
The API only reads what the daemon shows and queues requests for the daemon's one worker
(`Control.submit`), which starts the run in a cycle of its own.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Final

from reconciler.declarations.entries import Entry
from reconciler.kinds.base import kind_of
from reconciler.records import EntryRecord
from reconciler.redact import redactor
from reconciler.types import EntryId, Kind, Operation, RunId, split_entry_id

PREFIX: Final = "/api/v1"
SUBMIT_SECONDS: Final = 60.0
"""How long a request waits for the worker to start its run (a cycle in progress first)."""
LOG_POLL_SECONDS: Final = 0.2


class InFlight(RuntimeError):
    """A run of the entry is in flight: a new one is refused (409)."""


@dataclass(frozen=True)
class Control:
    """What the API reads of the daemon and asks of it."""

    records: Callable[[], Mapping[EntryId, EntryRecord]]
    declared: Callable[[], Mapping[EntryId, Entry]]
    submit: Callable[[EntryId, Operation], Future[RunId]]
    """Queue a run for the worker; the future holds its run id once it is submitted, or
    LookupError (not declared), InFlight or RuntimeError (it cannot start)."""
    logs: Callable[[RunId], str]
    in_flight: Callable[[RunId], bool]


class Api:
    def __init__(self, token: str, control: Control) -> None:
        token = token.strip()
        if not token:
            raise ValueError("the API token is empty")
        redactor.add(token)
        self._token = token.encode()
        self.control = control

    def authorised(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        # Compared even when the scheme is wrong, so timing says nothing of which part failed.
        ok = hmac.compare_digest(given.strip().encode("latin-1", "replace"), self._token)
        return ok and scheme.lower() == "bearer"

    def handle(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        respond = _Responder(handler)
        if not self.authorised(handler.headers.get("Authorization")):
            respond.json(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"},
                         {"WWW-Authenticate": 'Bearer realm="reconciler"'})
            return
        parts = [p for p in path[len(PREFIX):].split("/") if p]
        method = handler.command
        if parts == ["entries"]:
            if method != "GET":
                respond.not_allowed("GET")
                return
            self._list(respond)
            return
        if len(parts) < 3 or parts[0] != "entries" or len(parts) > 4:
            respond.error(HTTPStatus.NOT_FOUND, "not found")
            return
        try:
            kind, _ = split_entry_id(f"{parts[1]}/{parts[2]}")
        except ValueError:
            respond.error(HTTPStatus.NOT_FOUND, f"no kind {parts[1][:40]!r}")
            return
        entry_id = EntryId(f"{parts[1]}/{parts[2]}")
        action = parts[3] if len(parts) == 4 else ""
        wanted = {"": "GET", "log": "GET", "run": "POST", "drift": "POST"}.get(action)
        if wanted is None:
            respond.error(HTTPStatus.NOT_FOUND, "not found")
        elif method != wanted:
            respond.not_allowed(wanted)
        elif action == "":
            self._record(respond, entry_id)
        elif action == "log":
            self._log(respond, entry_id)
        else:
            self._run(respond, entry_id, kind, drift=action == "drift")

    def _list(self, respond: _Responder) -> None:
        records = self.control.records()
        declared = self.control.declared()
        items = []
        for entry_id in sorted(set(records) | set(declared)):
            record = records.get(entry_id)
            kind, name = split_entry_id(entry_id)
            run = record.last_run if record else None
            items.append({
                "id": entry_id, "kind": kind.value, "name": name,
                "phase": record.phase.value if record else "Pending",
                "message": record.message if record else "",
                "lastRun": {"id": run.id, "state": run.state.value} if run else None,
            })
        respond.json(HTTPStatus.OK, {"entries": items})

    def _record(self, respond: _Responder, entry_id: EntryId) -> None:
        record = self.control.records().get(entry_id)
        if record is None:
            respond.error(HTTPStatus.NOT_FOUND, f"no record of {entry_id}")
            return
        respond.json(HTTPStatus.OK, record.model_dump(mode="json", exclude_none=True))

    def _run(self, respond: _Responder, entry_id: EntryId, kind: Kind, *, drift: bool) -> None:
        entry = self.control.declared().get(entry_id)
        if entry is None:
            respond.error(HTTPStatus.NOT_FOUND, f"{entry_id} is not declared")
            return
        if drift and Operation.DRIFT not in kind_of(kind).operations:
            respond.error(HTTPStatus.BAD_REQUEST, f"a {kind.prefix} has no drift plan")
            return
        operation = Operation.DRIFT if drift else kind_of(kind).lifecycle(entry).success
        try:
            run_id = self.control.submit(entry_id, operation).result(timeout=SUBMIT_SECONDS)
        except LookupError as err:
            respond.error(HTTPStatus.NOT_FOUND, str(err))
        except InFlight as err:
            respond.error(HTTPStatus.CONFLICT, str(err))
        except FutureTimeout:
            respond.error(HTTPStatus.SERVICE_UNAVAILABLE, "the daemon did not start it in time")
        except Exception as err:  # it could not start: say why, as the record does
            respond.error(HTTPStatus.CONFLICT, redactor(str(err)))
        else:
            respond.json(HTTPStatus.ACCEPTED, {"runId": run_id, "operation": operation.value})

    def _log(self, respond: _Responder, entry_id: EntryId) -> None:
        record = self.control.records().get(entry_id)
        run = record.last_run if record else None
        if run is None:
            respond.error(HTTPStatus.NOT_FOUND, f"no run of {entry_id}")
            return
        control = self.control
        respond.stream(lambda: (redactor(control.logs(run.id)), control.in_flight(run.id)),
                       {"X-Run-Id": run.id})


class _Responder:
    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.handler = handler

    def json(self, status: HTTPStatus, body: Any,
             headers: Mapping[str, str] | None = None) -> None:
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        h = self.handler
        h.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Cache-Control", "no-store")
        h.end_headers()
        h.wfile.write(data)

    def error(self, status: HTTPStatus, message: str) -> None:
        self.json(status, {"error": message})

    def not_allowed(self, allow: str) -> None:
        self.json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use {allow}"}, {"Allow": allow})

    def stream(self, read: Callable[[], tuple[str, bool]], headers: Mapping[str, str]) -> None:
        """Chunked text: what the log holds, then what it gains while the run lasts."""
        h = self.handler
        h.protocol_version = "HTTP/1.1"  # chunked needs 1.1; this connection closes after
        h.close_connection = True
        h.send_response(HTTPStatus.OK)
        for name, value in {"Content-Type": "text/plain; charset=utf-8", **headers}.items():
            h.send_header(name, value)
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-store")
        h.send_header("Connection", "close")
        h.end_headers()
        sent = 0
        while True:
            text, running = read()
            data = text.encode()
            if len(data) < sent:  # the log was replaced (a retry): send it whole again
                sent = 0
            if len(data) > sent:
                chunk = data[sent:]
                h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                h.wfile.flush()
                sent = len(data)
            if not running:
                break
            time.sleep(LOG_POLL_SECONDS)
        h.wfile.write(b"0\r\n\r\n")
