"""A pytest plugin that records the Kubernetes API requests reconciler's own code makes.

Loaded with `-p tests.deploy.apirecorder` while $RECONCILER_API_RECORD names a file, it wraps
the official client's one HTTP entry point and appends `[method, url]` as a JSON line for each
request whose call stack passes through the `reconciler` package. Requests a test makes itself
(standing in for the Job controller or the kubelet) are left out: they are not the daemon's.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

ENV = "RECONCILER_API_RECORD"
PACKAGE = str(Path(__file__).resolve().parents[2] / "reconciler") + os.sep
_lock = threading.Lock()


def _from_reconciler() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    from kubernetes.client import rest

    original: Any = rest.RESTClientObject.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if _from_reconciler():
            line = json.dumps([method, url]) + "\n"
            with _lock, open(path, "a", encoding="utf-8") as out:
                out.write(line)
        return original(self, method, url, *args, **kwargs)

    rest.RESTClientObject.request = request  # type: ignore[method-assign]
