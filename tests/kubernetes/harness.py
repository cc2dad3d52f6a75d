"""The Kubernetes side of the shared executor suite (`tests/executors`): an API emulator with
a local Job controller and kubelet (`cluster`), one namespace, executors on the real client."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from kubernetes.client import CoreV1Api, V1Secret
from kubernetes.client.exceptions import ApiException

from reconciler.executors.kubernetes.executor import KubernetesExecutor
from reconciler.executors.kubernetes.manifests import KubernetesOptions
from tests.kubernetes.cluster import LocalCluster
from tests.kubernetes.server import RunningApiServer
from tests.support.processes import process_alive

NAMESPACE = "runs"


class KubernetesHarness:
    name = "kubernetes"

    def __init__(self, root: Path) -> None:
        self.api = RunningApiServer()
        self.api.call(self.api.server.add_namespace, NAMESPACE)
        self.core = CoreV1Api(self.api.client())
        self.cluster = LocalCluster(self.api, NAMESPACE, root / "cluster").start()
        self.executors: list[KubernetesExecutor] = []

    def make(self, *, max_parallel: int = 4, **options: Any) -> KubernetesExecutor:
        settings: dict[str, Any] = {
            "start_grace": 0.2, "log_interval": 0.0, "watch_timeout": 30, **options}
        executor = KubernetesExecutor(
            api_client=self.api.client(), options=KubernetesOptions(namespace=NAMESPACE),
            max_parallel=max_parallel, **settings,
        )
        self.executors.append(executor)
        return executor

    def add_secret(self, secret: str, key: str, value: str) -> None:
        self.add_secret_to(self.core, secret, key, value)

    @staticmethod
    def add_secret_to(core: CoreV1Api, secret: str, key: str, value: str) -> None:
        data = {key: base64.b64encode(value.encode()).decode()}
        try:
            core.create_namespaced_secret(NAMESPACE, V1Secret.from_dict(
                {"metadata": {"name": secret}, "data": data}))
        except ApiException as err:
            if err.status != 409:
                raise
            core.patch_namespaced_secret(secret, NAMESPACE, {"data": data},
                                         _content_type="application/merge-patch+json")

    def process_alive(self, pid: int) -> bool:
        # The local cluster runs pods as processes of this machine.
        return process_alive(pid)

    def cleanup(self) -> None:
        for executor in self.executors:
            executor.close()
        self.cluster.stop()
        self.api.stop()
        assert not self.cluster.errors, self.cluster.errors
