"""A stack's state in its own Secret, locked by its own Lease: what a stack pod does with them.

The pod's account may `get` and `update` exactly these two objects (`stackaccess`), which the
daemon made before the Job. The Secret holds the state as the engine's `kubernetes` backend
writes it (gzip, then base64, in `data.tfstate`). The lock is the Lease's holder: taken by an
update carrying the Lease's resourceVersion (so two takers cannot both win), renewed while the
run lasts, released at the end. A lock whose holder stopped renewing for `lease_seconds` (a pod
killed without a chance to release it) is taken over; one held by the engine's own backend
(`tofu` run by hand, which never renews) stays until it is released.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.executors.kubernetes.client import request_json, status_of
from reconciler.executors.kubernetes.leader import micro_time

LOCK_INFO = "app.terraform.io/lock-info"
"""Where the engine's backend says who holds the lock; `tofu force-unlock` reads it."""
STATE_KEY = "tfstate"


class StateLockedError(RuntimeError):
    """Someone else holds the stack's lock."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _parse(stamp: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


class StateStore:
    def __init__(self, api: Any, *, namespace: str, secret: str, lease: str, holder: str,
                 lease_seconds: int = 60, clock: Callable[[], datetime] = _utcnow) -> None:
        self._api = api
        self._secrets = f"/api/v1/namespaces/{namespace}/secrets/{secret}"
        self._lease = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease}"
        self.holder = holder
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------

    def load(self) -> bytes | None:
        """The stored state, or None before the first run wrote one."""
        secret = request_json(self._api, "GET", self._secrets)
        encoded = (secret.get("data") or {}).get(STATE_KEY)
        return gzip.decompress(base64.b64decode(encoded)) if encoded else None

    def save(self, state: bytes) -> None:
        secret = request_json(self._api, "GET", self._secrets)
        secret.setdefault("data", {})[STATE_KEY] = base64.b64encode(
            gzip.compress(state)).decode()
        secret.setdefault("metadata", {}).setdefault("annotations", {})["encoding"] = "gzip"
        request_json(self._api, "PUT", self._secrets, body=secret)

    # -- the lock --------------------------------------------------------------------------

    def lock(self, operation: str, *, poll: float = 2.0) -> None:
        """Take the lock, or raise StateLockedError naming who has it. A lock of ours that is
        still being renewed is waited for until it would have expired (the pod of an earlier
        attempt, killed, may have left it); the engine's own lock is not."""
        deadline = self._clock() + timedelta(seconds=self.lease_seconds * 1.5)
        while True:
            lease = request_json(self._api, "GET", self._lease)
            spec = lease.setdefault("spec", {})
            holder = spec.get("holderIdentity")
            if not holder or holder == self.holder or self._abandoned(spec):
                break
            if not self._renewed(spec) or self._clock() >= deadline:
                raise StateLockedError(f"the state is locked by {holder} ({self._who(lease)})")
            self._stop.wait(poll)
        now = micro_time(self._clock())
        spec.update(holderIdentity=self.holder, leaseDurationSeconds=self.lease_seconds,
                    acquireTime=now, renewTime=now)
        info = {"ID": self.holder, "Operation": operation, "Who": self.holder,
                "Created": now, "Info": "reconciler stack run"}
        lease.setdefault("metadata", {}).setdefault("annotations", {})[LOCK_INFO] = (
            json.dumps(info))
        try:
            request_json(self._api, "PUT", self._lease, body=lease)
        except Exception as err:
            if status_of(err) == 409:
                raise StateLockedError("another run took the lock at the same moment") from None
            raise
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="state-lock", daemon=True)
        self._renewer.start()

    def unlock(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
        lease = request_json(self._api, "GET", self._lease)
        spec = lease.setdefault("spec", {})
        if spec.get("holderIdentity") != self.holder:
            return
        for key in ("holderIdentity", "acquireTime", "renewTime", "leaseDurationSeconds"):
            spec.pop(key, None)
        (lease.get("metadata") or {}).get("annotations", {}).pop(LOCK_INFO, None)
        request_json(self._api, "PUT", self._lease, body=lease)

    @staticmethod
    def _renewed(spec: dict[str, Any]) -> bool:
        """A lock of ours, which its holder renews; the engine's own lock is never renewed."""
        return _parse(spec.get("renewTime")) is not None and isinstance(
            spec.get("leaseDurationSeconds"), int)

    def _abandoned(self, spec: dict[str, Any]) -> bool:
        if not self._renewed(spec):
            return False  # the engine's own lock: it never expires by itself
        renewed = _parse(spec.get("renewTime"))
        assert renewed is not None
        return self._clock() - renewed > timedelta(seconds=spec["leaseDurationSeconds"])

    @staticmethod
    def _who(lease: dict[str, Any]) -> str:
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        try:
            info = json.loads(annotations.get(LOCK_INFO) or "{}")
        except ValueError:
            info = {}
        return f"{info.get('Operation') or 'unknown operation'} since {info.get('Created')}"

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                lease = request_json(self._api, "GET", self._lease)
                spec = lease.setdefault("spec", {})
                if spec.get("holderIdentity") != self.holder:
                    return
                spec["renewTime"] = micro_time(self._clock())
                request_json(self._api, "PUT", self._lease, body=lease)
            except Exception:  # noqa: S112 - the next renewal tries again
                continue
