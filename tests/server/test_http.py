"""The probes, /metrics and the server's lifecycle, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.http.server import Server, parse_listen
from reconciler.metrics import Metrics
from reconciler.settings import Settings
from tests.server.conftest import StartServer
from tests.support.http import request
from tests.support.waiting import wait_until


def test_healthz_follows_the_liveness_callable(start_server: StartServer) -> None:
    running = start_server()
    assert (running.get("/healthz").status, running.get("/healthz").text) == (200, "ok\n")
    running.probe.alive = False
    response = running.get("/healthz")
    assert response.status == 503
    assert response.text.startswith("unhealthy")


def test_readyz_is_503_with_the_reason_until_the_first_sync(start_server: StartServer) -> None:
    running = start_server()
    before = running.get("/readyz")
    assert before.status == 503
    assert "waiting for the first successful sync" in before.text
    running.probe.ready = (True, "synced abc123")
    after = running.get("/readyz")
    assert (after.status, after.text) == (200, "ok: synced abc123\n")


def test_a_probe_that_raises_answers_503_instead_of_hanging(start_server: StartServer) -> None:
    def broken() -> bool:
        raise RuntimeError("loop state unavailable")

    running = start_server(ready=broken)
    response = running.get("/readyz")
    assert response.status == 503
    assert "RuntimeError" in response.text


def test_unknown_paths_are_404_and_wrong_methods_405(start_server: StartServer) -> None:
    running = start_server()
    assert running.get("/nope").status == 404
    assert running.get("/hooks/git").status == 405
    wrong = running.call("POST", "/metrics", b"")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "GET, HEAD"
    assert running.call("DELETE", "/healthz").status == 405
    head = running.call("HEAD", "/healthz")
    assert (head.status, head.body) == (200, b"")
    assert running.get("/healthz/").status == 200  # a trailing slash is the same route


def test_metrics_endpoint_serves_the_registry(start_server: StartServer) -> None:
    running = start_server()
    running.metrics.set_revision("main", "0123abcd" * 5)
    response = running.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    revision = families["reconciler_source_revision_info"].samples
    assert [s.labels for s in revision] == [{"branch": "main", "commit": "0123abcd" * 5}]
    assert "process_resident_memory_bytes" in families


def test_metrics_negotiates_openmetrics_and_gzip(start_server: StartServer) -> None:
    running = start_server()
    om = running.get("/metrics", Accept="application/openmetrics-text; version=1.0.0")
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    zipped = running.get("/metrics", **{"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert b"reconciler_build_info" in gzip.decompress(zipped.body)


def test_port_0_binds_a_free_port_and_reports_it(start_server: StartServer) -> None:
    running = start_server()
    host, port = running.server.address
    assert host == "127.0.0.1"
    assert port > 0
    assert running.server.url == f"http://127.0.0.1:{port}"


def test_a_port_in_use_is_a_clear_error(start_server: StartServer) -> None:
    running = start_server()
    host, port = running.server.address
    second = Server(f"{host}:{port}", metrics=Metrics(), health=lambda: True,
                    ready=lambda: True, on_trigger=lambda _: None)
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
        second.start()


def test_stop_closes_the_socket_and_joins_threads_even_with_a_stalled_client() -> None:
    before = set(threading.enumerate())
    server = Server("127.0.0.1:0", metrics=Metrics(), health=lambda: True, ready=lambda: True,
                    on_trigger=lambda _: None, request_timeout=30)
    server.start()
    host, port = server.address
    assert request(server.url + "/healthz").status == 200
    served = set(threading.enumerate())
    # A client that sends half a request and then nothing keeps a handler thread reading.
    stalled = socket.create_connection((host, port))
    stalled.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    wait_until(lambda: [thread for thread in set(threading.enumerate()) - served
                        if thread.name.endswith("(process_request_thread)")],
               what="a handler thread for the stalled client")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    stalled.close()
    assert set(threading.enumerate()) <= before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=1).close()
    server.stop()  # a second stop is harmless


def test_parse_listen_accepts_the_documented_forms() -> None:
    assert parse_listen("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen(":9100") == ("127.0.0.1", 9100)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen("localhost")


def test_ipv6_loopback_is_served() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with Server("[::1]:0", metrics=Metrics(), health=lambda: True, ready=lambda: True,
                on_trigger=lambda _: None) as server:
        assert server.url.startswith("http://[::1]:")
        assert request(server.url + "/healthz").status == 200


def test_from_settings_follows_listen_and_the_webhook_secret() -> None:
    def build(**fields: object) -> Server | None:
        settings = Settings(repo="file:///x", **fields)
        return Server.from_settings(settings, metrics=Metrics(), health=lambda: True,
                                    ready=lambda: True, on_trigger=lambda _: None)

    assert build(listen=None) is None
    server = build(listen="127.0.0.1:0", webhook_secret="from-a-file-secret\n", branch="prod")
    assert server is not None
    assert server.secret == b"from-a-file-secret"
    assert server.refs == {"refs/heads/prod"}
