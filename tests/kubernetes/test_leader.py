"""Leader election on a Lease: one holder at a time, a standby takes over within the lease
duration when the leader stops renewing (at once when it releases), a lost race is a 409, and a
leader that cannot renew steps down before anyone may take over."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import CoordinationV1Api

from reconciler.executors.kubernetes.adapter import KubernetesSettings
from reconciler.executors.kubernetes.leader import LeaderElector
from reconciler.settings import Settings
from tests.kubernetes.conftest import NAMESPACE
from tests.kubernetes.server import RunningApiServer
from tests.support.waiting import wait_until

MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def electors(apiserver: RunningApiServer) -> Iterator[Callable[..., LeaderElector]]:
    made: list[LeaderElector] = []

    def make(identity: str, **kwargs: Any) -> LeaderElector:
        timing = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}
        elector = LeaderElector(api_client=apiserver.client(), namespace=NAMESPACE,
                                name="reconciler", identity=identity, **{**timing, **kwargs})
        made.append(elector)
        return elector

    try:
        yield make
    finally:
        for elector in made:
            elector.stop(release=False)


def lease(apiserver: RunningApiServer) -> dict[str, Any]:
    api = CoordinationV1Api(apiserver.client())
    value: dict[str, Any] = json.loads(api.read_namespaced_lease(
        "reconciler", NAMESPACE, _preload_content=False).data)
    return value


def test_one_leader_and_a_standby_that_takes_over_when_it_stops_renewing(
        apiserver: RunningApiServer, electors: Callable[..., LeaderElector]) -> None:
    changes: list[bool] = []
    first = electors("replica-a", on_change=changes.append)
    second = electors("replica-b")
    first.start()
    wait_until(lambda: first.is_leader, what="the first replica to lead")
    second.start()
    wait_until(lambda: second.holder == "replica-a", what="the standby to read the lease")

    assert first.is_leader
    assert not second.is_leader
    assert second.holder == first.holder == "replica-a"
    spec = lease(apiserver)["spec"]
    assert spec["holderIdentity"] == "replica-a"
    assert spec["leaseDurationSeconds"] == 1
    assert MICRO.match(spec["renewTime"])
    assert MICRO.match(spec["acquireTime"])

    stopped = time.monotonic()
    first.stop(release=False)  # as if its pod were gone: no release
    wait_until(lambda: second.is_leader, timeout=5, what="the standby to lead")
    assert time.monotonic() - stopped < 2.5  # the 1 s lease, a retry, and slack for load
    spec = lease(apiserver)["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("replica-b", 1)
    assert changes == [True, False]


def test_a_released_lease_is_taken_over_at_once(
        apiserver: RunningApiServer, electors: Callable[..., LeaderElector]) -> None:
    first = electors("replica-a", lease_duration=10.0, renew_deadline=5.0)
    second = electors("replica-b", lease_duration=10.0, renew_deadline=5.0)
    first.start()
    wait_until(lambda: first.is_leader, what="the first replica to lead")
    second.start()
    wait_until(lambda: second.holder == "replica-a", what="the standby to read the lease")
    assert not second.is_leader

    released = time.monotonic()
    first.stop()

    wait_until(lambda: second.is_leader, timeout=3, what="the standby to lead")
    assert time.monotonic() - released < 1.5  # far sooner than the 10 s lease
    assert not first.is_leader


def test_losing_the_race_for_the_lease_is_a_conflict(
        apiserver: RunningApiServer, electors: Callable[..., LeaderElector]) -> None:
    clock = Clock()
    first = electors("replica-a", clock=clock)
    second = electors("replica-b", clock=clock)
    assert first.step()
    assert not second.step()
    clock.now += 1.5  # replica-a stopped renewing; the Lease has expired for replica-b

    # Another replica writes the Lease between replica-b's read and its write.
    apiserver.call(apiserver.server.fail, "PUT", "leases", 409, 1)
    assert not second.step()
    assert second.step()
    assert lease(apiserver)["spec"]["holderIdentity"] == "replica-b"


def test_a_leader_that_cannot_renew_steps_down_before_the_lease_expires(
        apiserver: RunningApiServer, electors: Callable[..., LeaderElector]) -> None:
    clock = Clock()
    changes: list[bool] = []
    elector = electors("replica-a", clock=clock, on_change=changes.append)
    assert elector.step()
    apiserver.call(apiserver.server.fail, "GET", "leases", 503, 100)

    clock.now += 0.3
    assert elector.step()  # within the renew deadline: still leading
    clock.now += 0.4
    assert not elector.step()  # past it, and before the 1 s lease could expire elsewhere
    assert changes == [True, False]


def test_the_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElector(api_client=None,  # type: ignore[arg-type]
                      namespace="n", name="l", lease_duration=5, renew_deadline=5)


def test_the_daemons_elector_from_its_settings(
        apiserver: RunningApiServer, tmp_path: Path) -> None:
    own = KubernetesSettings(namespace=NAMESPACE,
                             kubeconfig=apiserver.write_kubeconfig(tmp_path / "kubeconfig"))
    settings = Settings(repo="https://example.com/r.git", executor="kubernetes",
                        executor_settings=(own,), leader_election_id="blue")
    elector = LeaderElector.from_settings(settings, identity="pod-1", lease_duration=2.0,
                                          renew_deadline=1.0, retry_period=0.5)
    assert elector.step()
    api = CoordinationV1Api(apiserver.client())
    held = json.loads(api.read_namespaced_lease("blue", NAMESPACE, _preload_content=False).data)
    assert held["spec"]["holderIdentity"] == "pod-1"
    elector.stop()
    assert not elector.is_leader
