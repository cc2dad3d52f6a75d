"""Leader election on a coordination.k8s.io/v1 Lease, so two replicas can run side by side and
only one of them reconciles (`--leader-elect`).

The algorithm is client-go's:

- Every `retry_period` each replica reads the Lease. A Lease held by another replica counts as
  expired `lease_duration` after this replica last saw it change; the holder's own timestamps
  are not compared with the local clock, so clock skew between nodes does not matter.
- A free or expired Lease is taken, and a held one renewed, by replacing it with the
  `resourceVersion` just read: when two replicas race, the API server accepts one write and
  answers 409 Conflict to the other, which stays a follower.
- A leader that cannot renew for `renew_deadline` (shorter than `lease_duration`) stops
  leading before any follower may take over.
- `stop()` releases the Lease (empty holder, a one-second duration) so a standby takes over
  at its next try instead of waiting for the Lease to expire.

`is_leader` is what the daemon checks before each cycle; `holder` and `on_change` feed
`/readyz` and the `reconciler_leader` metric.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient
from loguru import logger

from reconciler.executors.kubernetes.adapter import KubernetesSettings
from reconciler.executors.kubernetes.client import connect, message_of, request_json, status_of
from reconciler.executors.kubernetes.labels import MANAGED_BY, MANAGER
from reconciler.settings import Settings


def micro_time(moment: datetime) -> str:
    """RFC 3339 with exactly six fractional digits, as MicroTime fields require."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """The pod's name (its hostname) plus a random part, unique across restarts."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    def __init__(
        self,
        *,
        api_client: ApiClient,
        namespace: str,
        name: str,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self._api = api_client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self._duration = lease_duration
        self._deadline = renew_deadline
        self._retry = retry_period
        self._clock = clock
        self._now = now
        self._on_change = on_change
        self._lock = threading.Lock()
        self._leading = False
        self._holder: str | None = None
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, on_change: Callable[[bool], None] | None = None,
        **kwargs: Any,
    ) -> LeaderElector:
        """The daemon's elector: the Lease `--leader-election-id` in `--namespace`."""
        own = settings.of(KubernetesSettings)
        return cls(api_client=connect(own.kubeconfig), namespace=own.namespace,
                   name=settings.leader_election_id, on_change=on_change, **kwargs)

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._leading

    @property
    def holder(self) -> str | None:
        """Who holds the Lease as last seen (this replica's identity when it leads)."""
        with self._lock:
            return self._holder

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    # -- one round -------------------------------------------------------------------------

    def step(self) -> bool:
        """Acquire or renew once; True while this replica leads."""
        try:
            leading = self._try_acquire_or_renew()
        except Exception as err:  # an unreachable API server is not a reason to crash
            logger.warning("leader election: {}", message_of(err))
            leading = self.is_leader and self._clock() - self._renewed_at < self._deadline
        self._set(leading)
        return leading

    def _try_acquire_or_renew(self) -> bool:
        now = self._now()
        try:
            lease = request_json(self._api, "GET", f"{self._path}/{self.name}")
        except Exception as err:
            if status_of(err) != 404:
                raise
            return self._create(now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        mono = self._clock()
        if record != self._observed:
            self._observed, self._observed_at = record, mono
        with self._lock:
            self._holder = holder
        duration = float(spec.get("leaseDurationSeconds") or self._duration)
        if holder not in (None, self.identity) and mono < self._observed_at + duration:
            return False
        mine = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0)
        lease["spec"] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self._duration),
            "acquireTime": spec.get("acquireTime") if mine else micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions if mine else transitions + 1,
        }
        try:
            request_json(self._api, "PUT", f"{self._path}/{self.name}", body=lease)
        except Exception as err:
            if status_of(err) == 409:  # another replica wrote first
                return False
            raise
        self._renewed_at = mono
        with self._lock:
            self._holder = self.identity
        if not mine:
            logger.info("leader election: {} now holds {}/{}", self.identity, self.namespace,
                        self.name)
        return True

    def _create(self, now: datetime) -> bool:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "labels": {MANAGED_BY: MANAGER}},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self._duration),
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            request_json(self._api, "POST", self._path, body=lease)
        except Exception as err:
            if status_of(err) == 409:
                return False
            raise
        self._renewed_at = self._clock()
        with self._lock:
            self._holder = self.identity
        logger.info("leader election: {} created and holds {}/{}", self.identity,
                    self.namespace, self.name)
        return True

    def _set(self, leading: bool) -> None:
        with self._lock:
            changed = leading != self._leading
            self._leading = leading
        if changed:
            if not leading:
                logger.warning("leader election: {} stopped leading", self.identity)
            if self._on_change is not None:
                self._on_change(leading)

    # -- the renew loop --------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="leader-election",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self._retry)

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing; with `release`, hand the Lease back at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._retry + 10.0)
            self._thread = None
        if release and self.is_leader:
            self._release()
        self._set(False)

    def _release(self) -> None:
        try:
            lease = request_json(self._api, "GET", f"{self._path}/{self.name}")
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": micro_time(self._now()),
            }
            request_json(self._api, "PUT", f"{self._path}/{self.name}", body=lease)
            logger.info("leader election: {} released {}/{}", self.identity, self.namespace,
                        self.name)
        except Exception as err:  # the Lease then simply expires
            logger.warning("leader election: cannot release the Lease: {}", message_of(err))
