"""The control API against a real daemon (local executor, real git remote) served by its loop."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.daemon.loops import serve
from reconciler.http.api import Api, Control
from reconciler.http.server import Server
from reconciler.scheduler import Request, Scheduler, Wakeup, WorkQueue
from reconciler.types import EntryId, Operation, RunId
from tests.daemon.conftest import World, task, world  # noqa: F401
from tests.support.http import request
from tests.support.waiting import wait_until

TOKEN = "s3cret-api-token"
DOC = Path(__file__).parents[2] / "docs" / "api.yaml"


@pytest.fixture
def served(world: Callable[..., World]) -> Iterator[tuple[World, Server]]:  # noqa: F811
    w = world({"hello.yaml": task("hello", "print('hello')")})
    work, stop = WorkQueue(), threading.Event()

    def submit(entry_id: EntryId, operation: Operation) -> Future[RunId]:
        started: Future[RunId] = Future()
        work.put(Wakeup("api", fetch=False, request=Request(entry_id, operation, started)))
        return started

    d = w.daemon
    api = Api(TOKEN, Control(records=lambda: dict(d.records), declared=lambda: d.desired.entries,
                             submit=submit, logs=d.executor.logs, in_flight=d.in_flight))
    server = Server("127.0.0.1:0", metrics=w.metrics, health=lambda: True, ready=lambda: True,
                    on_trigger=lambda _: None, api=api)
    server.start()
    worker = threading.Thread(target=serve, args=(d, work, Scheduler(
        work, interval=timedelta(seconds=3600)), stop))
    worker.start()
    try:
        yield w, server
    finally:
        stop.set()
        worker.join()
        server.stop()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_wrong_or_missing_token_is_refused_and_says_nothing(
        served: tuple[World, Server]) -> None:
    _, server = served
    for headers in ({}, _auth("wrong"), {"Authorization": TOKEN}):
        answer = request(server.url + "/api/v1/entries", headers=headers)
        assert answer.status == 401
        assert json.loads(answer.body) == {"error": "unauthorized"}


def test_api_is_off_without_a_token(world: Callable[..., World]) -> None:  # noqa: F811
    w = world({"hello.yaml": task("hello")})
    with Server("127.0.0.1:0", metrics=w.metrics, health=lambda: True, ready=lambda: True,
                on_trigger=lambda _: None) as server:
        assert request(server.url + "/api/v1/entries", headers=_auth()).status == 404


def test_trigger_runs_a_task_again(served: tuple[World, Server]) -> None:
    w, server = served

    def first() -> str | None:
        run = w.daemon.records.get(EntryId("task/hello"))
        last = run.last_run if run else None
        return last.id if last and last.state.finished else None

    before = wait_until(first, timeout=60, what="the first run of task/hello")
    listed = json.loads(request(server.url + "/api/v1/entries", headers=_auth()).body)
    assert [e["id"] for e in listed["entries"]] == ["task/hello"]
    answer = request(server.url + "/api/v1/entries/task/hello/run", "POST", b"", _auth())
    assert answer.status == 202, answer.body
    run_id = json.loads(answer.body)["runId"]
    assert run_id != before
    log = request(server.url + "/api/v1/entries/task/hello/log", headers=_auth())
    assert log.status == 200
    assert b"hello" in log.body
    drift = request(server.url + "/api/v1/entries/task/hello/drift", "POST", b"", _auth())
    assert drift.status == 400
    missing = request(server.url + "/api/v1/entries/task/nope/run", "POST", b"", _auth())
    assert missing.status == 404


def _documented() -> dict[str, Any]:
    from openapi_spec_validator import validate
    from ruamel.yaml import YAML

    document: dict[str, Any] = YAML(typ="safe").load(DOC.read_text())
    validate(document)  # a valid OpenAPI 3.1 description
    return document


def _schema_of(document: dict[str, Any], path: str, method: str, status: int) -> Any:
    answer = document["paths"][path][method]["responses"][str(status)]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    schema = answer["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def test_answers_match_the_published_description(served: tuple[World, Server]) -> None:
    w, server = served
    document = _documented()
    wait_until(lambda: EntryId("task/hello") in w.daemon.records, timeout=60,
               what="task/hello recorded")
    cases = [("/entries", "/api/v1/entries", "get", _auth(), 200),
             ("/entries", "/api/v1/entries", "get", _auth("wrong"), 401),
             ("/entries/{kind}/{name}", "/api/v1/entries/task/hello", "get", _auth(), 200),
             ("/entries/{kind}/{name}", "/api/v1/entries/task/nope", "get", _auth(), 404)]
    for documented, url, method, headers, status in cases:
        answer = request(server.url + url, method.upper(), None, headers)
        assert answer.status == status, (url, answer.body)
        jsonschema.validate(json.loads(answer.body),
                            _schema_of(document, documented, method, status))
    served_paths = {"/entries", "/entries/{kind}/{name}", "/entries/{kind}/{name}/run",
                    "/entries/{kind}/{name}/drift", "/entries/{kind}/{name}/log"}
    assert set(document["paths"]) == served_paths
