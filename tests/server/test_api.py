"""The control API against a real daemon (local executor, real git remote) served by its loop."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import timedelta

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
