"""The API emulator on a real HTTP port, served from a background thread.

The official client is synchronous: run from an async fixture in the test's own event loop,
its calls would block the loop that has to answer them. Here the server has a loop and a
thread of its own; tests talk to it over HTTP like any client, and reach into it (to write a
pod's log, drop watches) through `call`, which runs a function on the server's loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from aiohttp.test_utils import RawTestServer
from aiohttp.web import BaseRequest, ServerRunner
from aiohttp.web_server import Server as WebServer
from kmock import Server
from kubernetes.client import ApiClient, Configuration

from tests.kubernetes.emulator import ApiServer

T = TypeVar("T")
MAX_REQUEST_BYTES = 3 * 1024 * 1024


class _LargeRequests(RawTestServer):
    """The API server reads requests of up to 3 MiB (aiohttp stops at 1 MiB), so an object
    too large for etcd gets its 422 from the emulator, as from a real server."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> ServerRunner:
        loop = self._loop

        def request(*args: Any) -> BaseRequest:
            return BaseRequest(*args, loop, client_max_size=MAX_REQUEST_BYTES)

        server = WebServer(self._handler, loop=loop, debug=debug, request_factory=request,
                           **kwargs)
        return ServerRunner(server, debug=debug, **kwargs)


class RunningApiServer:
    def __init__(self, **options: Any) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._ready: Future[tuple[ApiServer, str]] = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="api-emulator", daemon=True)
        self._thread.start()
        self.server, self.url = self._ready.result(timeout=10)
        self._clients: list[ApiClient] = []

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with (ApiServer(**self._options) as server,
                        Server(server, server_cls=_LargeRequests) as http):
                self._ready.set_result((server, str(http.url).rstrip("/")))
                await self._stop.wait()
        except BaseException as err:
            if not self._ready.done():
                self._ready.set_exception(err)
            raise

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `function` on the server's loop, where its state lives, and return its result."""
        async def run() -> T:
            return function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig file pointing at this server, as `--kubeconfig` takes it."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "daemon", "user": {"token": "not-checked"}}],
            "contexts": [{"name": "emulator",
                          "context": {"cluster": "emulator", "user": "daemon"}}],
        }))
        return path

    def client(self) -> ApiClient:
        configuration = Configuration(host=self.url)
        client = ApiClient(configuration)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        # Open watches would hold the server's shutdown until their own timeouts.
        self.call(self.server.drop_watches)
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
