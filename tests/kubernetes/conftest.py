"""Fixtures of the Kubernetes tests: the API emulator on a real port (one per test), a
namespace, the official client, a local cluster that runs Jobs, executors that are closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api

from reconciler.executors.kubernetes.executor import KubernetesExecutor
from reconciler.executors.kubernetes.manifests import KubernetesOptions
from tests.kubernetes.cluster import LocalCluster
from tests.kubernetes.server import RunningApiServer

NAMESPACE = "runs"
DAEMON_AGENT = "reconciler-daemon"
"""The User-Agent of executors' clients, so a test can deny the daemon what the kubelet may."""


@pytest.fixture
def apiserver() -> Iterator[RunningApiServer]:
    server = RunningApiServer()
    server.call(server.server.add_namespace, NAMESPACE)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(apiserver: RunningApiServer) -> ApiClient:
    return apiserver.client()


@pytest.fixture
def core(client: ApiClient) -> CoreV1Api:
    return CoreV1Api(client)


@pytest.fixture
def batch(client: ApiClient) -> BatchV1Api:
    return BatchV1Api(client)


@pytest.fixture
def cluster(apiserver: RunningApiServer, tmp_path: Path) -> Iterator[LocalCluster]:
    running = LocalCluster(apiserver, NAMESPACE, tmp_path / "cluster").start()
    try:
        yield running
    finally:
        running.stop()
    assert not running.errors, running.errors


@pytest.fixture
def make_executor(apiserver: RunningApiServer) -> Iterator[Callable[..., KubernetesExecutor]]:
    made: list[KubernetesExecutor] = []

    def make(**kwargs: Any) -> KubernetesExecutor:
        options = kwargs.pop("options", KubernetesOptions(namespace=NAMESPACE))
        client = apiserver.client()
        client.user_agent = DAEMON_AGENT
        settings: dict[str, Any] = {"start_grace": 0.2, "log_interval": 0.0,
                                    "watch_timeout": 30, "retry_delay": 0.05, **kwargs}
        executor = KubernetesExecutor(api_client=client, options=options, **settings)
        made.append(executor)
        return executor

    try:
        yield make
    finally:
        for executor in made:
            executor.close()
