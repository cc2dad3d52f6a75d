"""A commit that cannot be loaded, or a remote that was down, never stalls reconciling: the
commit is retried until it loads, errors.yaml says why meanwhile, and a request (a webhook)
cuts any backoff short."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from reconciler.daemon.loops import liveness
from reconciler.declarations.entries import DesiredState
from reconciler.declarations.files import FileSource
from reconciler.declarations.loader import DeclarationLoader
from reconciler.http.server import Server
from reconciler.types import Revision
from tests.daemon.conftest import World, task
from tests.e2e.harness import status_file
from tests.support.waiting import wait_until


class _FailingOnce(DeclarationLoader):
    """The real loader, made to fail on its next load the way a fault of ours or of the
    object database would (bad files never make the loader raise)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def load(self, files: FileSource, revision: Revision | None = None) -> DesiredState:
        if self.fail_next:
            self.fail_next = False
            raise OSError("object database unreadable")
        return super().load(files, revision)


def _errors(w: World) -> list[dict[str, Any]]:
    data = status_file(w.bare, "status/errors.yaml")
    assert data is not None
    return list(data["errors"])


def test_a_commit_that_fails_to_load_is_retried_and_reported(world: Callable[..., World]) -> None:
    w = world({"hello.yaml": task("hello")})
    loader = _FailingOnce()
    w.daemon.loader = loader
    w.settle()
    first = w.daemon.revision

    loader.fail_next = True
    head = w.push({"other.yaml": task("other")})
    result = w.daemon.cycle(fetch=True)
    assert result.errors
    assert w.daemon.revision == first  # the last commit that loaded stays in force
    [error] = _errors(w)
    assert head[:12] in error["message"]
    assert "object database unreadable" in error["message"]
    assert w.metric("reconciler_declarations_load_total", result="error") == 1

    w.daemon.cycle(fetch=False)  # within the backoff: not loaded again yet
    assert w.daemon.revision == first
    w.clock.advance(minutes=10)
    w.settle()
    assert w.daemon.revision == head  # the same head, not a new push, was loaded again
    assert w.status("task/other")["phase"] == "Succeeded"
    assert _errors(w) == []
    assert w.metric("reconciler_declarations_load_total", result="success") == 2


def test_a_request_fetches_at_once_whatever_the_backoff(world: Callable[..., World]) -> None:
    w = world({"hello.yaml": task("hello")})
    w.settle()
    hidden = w.bare.with_name("hidden.git")
    w.bare.rename(hidden)
    assert w.daemon.cycle(fetch=True).errors  # the remote is down: backing off
    hidden.rename(w.bare)
    head = w.push({"other.yaml": task("other")})

    w.daemon.cycle(fetch=True)  # a poll within the backoff does not fetch
    assert w.daemon.revision != head
    result = w.daemon.cycle(fetch=True, urgent=True)  # a webhook does
    assert not result.errors
    assert w.daemon.revision == head


class _Stalling(DeclarationLoader):
    """The real loader, held at its next load until released: a worker that hangs."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def load(self, files: FileSource, revision: Revision | None = None) -> DesiredState:
        self.entered.set()
        self.release.wait(120)
        return super().load(files, revision)


def test_healthz_fails_while_a_cycle_never_ends(world: Callable[..., World]) -> None:
    w = world({"hello.yaml": task("hello")})
    loader = _Stalling()
    w.daemon.loader = loader
    stop = threading.Event()
    health = liveness(w.daemon, limit_seconds=0.5, stop=stop)
    server = Server("127.0.0.1:0", metrics=w.metrics, ready=lambda: True, on_trigger=print,
                    health=health)
    server.start()
    worker = threading.Thread(target=w.daemon.cycle)
    try:
        assert _healthz(server) == (200, "ok: alive\n")
        worker.start()
        assert loader.entered.wait(60)
        wait_until(lambda: w.daemon.busy_seconds() > 0.5, timeout=60,
                   what="the cycle to have lasted over the liveness timeout")
        status, body = _healthz(server)
        assert status == 503
        assert "one reconcile cycle has lasted" in body
    finally:
        loader.release.set()
        worker.join(120)
        server.stop()
    assert health() == (True, "alive")  # the cycle ended


def _healthz(server: Server) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()

