"""A cache of the objects of one kind that carry our labels, kept current by list + watch.

A thread lists the objects, then watches from the list's resourceVersion. A watch that ends
cleanly (the server's timeout) is resumed from the last version seen; one that breaks (a
dropped connection, an error event) or has expired (410 Gone: the server no longer has that
history) is followed by a fresh list, which replaces the cache whole, so an event missed in
between cannot leave a stale object behind. Readers take snapshots and never wait on the API.

A list or watch the API server forbids (403: RBAC gives the daemon nothing in that namespace)
makes the informer `denied`, with the server's reason, and it asks again every `denied_delay`
seconds, so a namespace that becomes allowed is watched again without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from loguru import logger

from reconciler.executors.kubernetes.client import (
    close,
    events,
    message_of,
    read_json,
    status_of,
)
from reconciler.redact import redactor

ListFunction = Callable[..., Any]


class WatchExpiredError(Exception):
    """The server cannot resume the watch from our version (410 Gone): list again."""


class WatchError(Exception):
    """The server sent an ERROR event other than 410."""


class Informer:
    def __init__(
        self,
        *,
        list_function: ListFunction,
        namespace: str,
        label_selector: str,
        kind: str,
        watch_timeout: int = 300,
        retry_delay: float = 1.0,
        request_timeout: float = 30.0,
        denied_delay: float = 30.0,
    ) -> None:
        self._list = list_function
        self.namespace = namespace
        self._selector = label_selector
        self.kind = kind
        self._watch_timeout = watch_timeout
        self._retry_delay = retry_delay
        self._request_timeout = request_timeout
        self._denied_delay = denied_delay
        self._denied: str | None = None
        self._resolved = threading.Event()
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        self.lists = 0
        """How many times the cache was rebuilt from a list (1 + resyncs)."""

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"informer-{self.kind}-{self.namespace}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            close(response)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    @property
    def denied(self) -> str | None:
        """The API server's reason while it forbids this informer's list or watch."""
        return self._denied

    def wait_resolved(self, timeout: float) -> bool:
        """Wait until the first list was answered: synced, or denied."""
        return self._resolved.wait(timeout)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._objects)

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(name)

    def put(self, obj: dict[str, Any]) -> None:
        """Record an object this process has just written, ahead of its watch event."""
        name = (obj.get("metadata") or {}).get("name")
        if name:
            with self._lock:
                self._objects[name] = obj

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self._relist()
                self._watch(version)
            except WatchExpiredError:
                continue
            except Exception as err:
                if self._stop.is_set():
                    return
                if status_of(err) == 403:
                    self._deny(message_of(err))
                    self._stop.wait(self._denied_delay)
                    continue
                logger.warning(
                    "watching {} in {} failed, listing again: {}",
                    self.kind, self.namespace, redactor(message_of(err)),
                )
                self._stop.wait(self._retry_delay)

    def _deny(self, reason: str) -> None:
        if self._denied is None:
            logger.warning("cannot watch {} in namespace {}: {}", self.kind, self.namespace,
                           redactor(reason))
        self._denied = reason
        # What was cached is no longer known to be current.
        with self._lock:
            self._objects = {}
        self._synced.clear()
        self._resolved.set()

    def _relist(self) -> str:
        response = self._list(
            self.namespace, label_selector=self._selector,
            _preload_content=False, _request_timeout=self._request_timeout,
        )
        body = read_json(response)
        objects = {}
        for item in body.get("items") or ():
            name = (item.get("metadata") or {}).get("name")
            if name:
                objects[name] = item
        with self._lock:
            self._objects = objects
        self.lists += 1
        if self._denied is not None:
            logger.info("{} in namespace {} can be watched again", self.kind, self.namespace)
            self._denied = None
        self._synced.set()
        self._resolved.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> None:
        while not self._stop.is_set():
            response = self._list(
                self.namespace, label_selector=self._selector, watch=True,
                resource_version=version, timeout_seconds=self._watch_timeout,
                allow_watch_bookmarks=True, _preload_content=False,
                _request_timeout=(self._request_timeout, self._watch_timeout + 30),
            )
            self._response = response
            try:
                if self._stop.is_set():  # stop() may have run before the line above
                    return
                for event in events(response):
                    version = self._apply(event) or version
                    if self._stop.is_set():
                        return
            finally:
                self._response = None
                close(response)

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise WatchExpiredError(obj.get("message", ""))
            raise WatchError(f"{obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
        metadata = obj.get("metadata") or {}
        name = metadata.get("name")
        if kind in ("ADDED", "MODIFIED") and name:
            with self._lock:
                self._objects[name] = obj
        elif kind == "DELETED" and name:
            with self._lock:
                self._objects.pop(name, None)
        version = metadata.get("resourceVersion")
        return str(version) if version else None
