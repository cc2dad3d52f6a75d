"""Masking a run's secret values in its log, which ends up in status files (DESIGN §7).

The kubelet resolves `secretKeyRef`s; the daemon does not need a Secret to start a run. But a
task may print a secret, and the log tail is committed to the status branch. To mask what the
run could print, the executor reads exactly the Secret keys the run's containers reference and
registers their values with the redactor: RBAC `get` on `secrets` in the runs' namespace
(restrict it with `resourceNames` to the Secrets runs use, if you like). The redactor then masks
every form a value is printed in (`redact.secret_forms`: escaped, encoded, line by line).

When a referenced Secret cannot be read (403), the log is withheld rather than shown
unmasked. A Secret that does not exist has no value to mask. `enabled=False` turns reading off
altogether; logs are then shown as the run wrote them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Any

from reconciler.executors.kubernetes.client import message_of, read_json, status_of


class SecretMasker:
    def __init__(self, core: Any, *, register: Callable[..., None], enabled: bool = True) -> None:
        self._core = core
        self._register = register
        self.enabled = enabled

    def mask(self, namespace: str, refs: Iterable[tuple[str, str]]) -> str | None:
        """Register the values of `refs`; None when done, else why the log must be withheld."""
        if not self.enabled:
            return None
        wanted: dict[str, set[str]] = {}
        for secret, key in refs:
            wanted.setdefault(secret, set()).add(key)
        problems = []
        for secret, keys in sorted(wanted.items()):
            try:
                obj = read_json(self._core.read_namespaced_secret(
                    secret, namespace, _preload_content=False, _request_timeout=30))
            except Exception as err:
                if status_of(err) != 404:
                    problems.append(
                        f"cannot read Secret {secret!r} to mask its values: {message_of(err)}")
                continue
            data = obj.get("data") or {}
            for key in keys:
                if key in data:
                    try:
                        value = base64.b64decode(data[key]).decode("utf-8", errors="replace")
                    except (binascii.Error, ValueError):
                        continue
                    self._register(value)
        return "; ".join(problems) or None
