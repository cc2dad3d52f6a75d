"""Fixtures for the HTTP server, metrics and logging tests: a started server on a free port
and a request helper (logging into a buffer is the shared `log_output` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from reconciler.http.server import Server
from reconciler.metrics import Metrics
from tests.support.http import Response, request


@dataclass
class Probe:
    """Mutable answers for /healthz and /readyz, flipped by tests."""

    alive: bool = True
    ready: tuple[bool, str] = (False, "waiting for the first successful sync")


@dataclass
class Triggers:
    """Records `on_trigger` calls; `wait` blocks until one arrives."""

    reasons: list[str] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.event.set()

    def wait(self, seconds: float = 1.0) -> bool:
        return self.event.wait(seconds)


@dataclass
class Running:
    server: Server
    metrics: Metrics
    probe: Probe
    triggers: Triggers

    def get(self, path: str, **headers: str) -> Response:
        return request(self.server.url + path, headers=headers)

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> Response:
        return request(self.server.url + path, method, body, headers)


StartServer = Callable[..., Running]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    started: list[Server] = []

    def start(**kwargs: object) -> Running:
        probe, triggers, metrics = Probe(), Triggers(), Metrics()
        options: dict[str, object] = {
            "metrics": metrics,
            "health": lambda: probe.alive,
            "ready": lambda: probe.ready,
            "on_trigger": triggers,
        }
        options.update(kwargs)
        server = Server("127.0.0.1:0", **options)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return Running(server, options["metrics"], probe, triggers)  # type: ignore[arg-type]

    yield start
    for server in started:
        server.stop()
