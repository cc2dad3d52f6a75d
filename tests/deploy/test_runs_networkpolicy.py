"""The NetworkPolicies of run pods, against the labels the executor really puts on them: a
task's pod gets nothing in and, out, DNS and the internet but neither the cluster's private
ranges (pods, Services, the API server on most clusters) nor the daemon; a stack's pod may also
reach the API server's ports, for its state; the daemon's own pod is not selected."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from reconciler.executors.kubernetes.manifests import KubernetesOptions, build_manifests
from reconciler.runs import RunRequest, run_id_for
from reconciler.types import Operation, Revision, Trigger
from tests.deploy.support import find, find_all, pod_spec, rendered
from tests.executors.conftest import task_entry
from tests.kubernetes.test_executor import stack_entry

OPTIONS = KubernetesOptions(namespace="reconciler", source_url="https://git.example.com/r.git")


def pod_labels(entry: Any, operation: Operation) -> dict[str, str]:
    request = RunRequest(run_id=run_id_for(entry, operation, 1), entry=entry,
                         operation=operation, trigger=Trigger.NEW, attempt=1,
                         revision=Revision("0" * 40), requested_at=datetime.now(UTC))
    labels: dict[str, str] = build_manifests(request, OPTIONS).job["spec"]["template"][
        "metadata"]["labels"]
    return labels


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"]["matchLabels"]
    return bool(wanted) and wanted.items() <= labels.items()


def policies_for(labels: dict[str, str]) -> list[dict[str, Any]]:
    return [p for p in find_all(rendered("base"), "NetworkPolicy") if selects(p, labels)]


def reachable(policies: list[dict[str, Any]], address: str, port: int) -> bool:
    """Whether any egress rule of `policies` lets a TCP connection to address:port out."""
    ip = ipaddress.ip_address(address)
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            ports = rule.get("ports")
            if ports and not any(p["port"] == port and p["protocol"] == "TCP" for p in ports):
                continue
            peers = rule.get("to")
            if peers is None:
                return True
            for peer in peers:
                block = peer.get("ipBlock")
                if block is None:
                    continue
                network = ipaddress.ip_network(block["cidr"])
                if ip.version == network.version and ip in network and not any(
                        ip in ipaddress.ip_network(e) for e in block.get("except", [])):
                    return True
    return False


def test_task_pods_get_nothing_in_and_only_dns_and_the_internet_out() -> None:
    labels = pod_labels(task_entry("report", ["true"]), Operation.RUN)
    policies = policies_for(labels)
    assert [p["metadata"]["name"] for p in policies] == ["reconciler-runs"]
    [policy] = policies
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    assert reachable(policies, "140.82.112.3", 443)  # a Git host on the internet
    assert reachable(policies, "2606:50c0:8000::153", 443)
    for private in ("10.96.0.1", "172.20.0.10", "192.168.1.5", "100.64.0.1", "169.254.169.254"):
        for port in (443, 6443, 9100):
            assert not reachable(policies, private, port), (private, port)
    assert not reachable(policies, "fd00::1", 443)


def test_stack_pods_may_also_reach_the_api_servers_ports() -> None:
    labels = pod_labels(stack_entry("net"), Operation.APPLY)
    policies = policies_for(labels)
    assert {p["metadata"]["name"] for p in policies} == {
        "reconciler-runs", "reconciler-stack-state"}
    assert reachable(policies, "10.96.0.1", 443)
    assert reachable(policies, "10.0.0.5", 6443)
    assert not reachable(policies, "10.0.0.5", 9100)  # never the daemon's port


def test_the_daemons_pod_is_not_a_run_pod() -> None:
    objects = rendered("base")
    daemon = find(objects, "Deployment", "reconciler")["spec"]["template"]["metadata"]["labels"]
    assert pod_spec(objects)
    assert [p["metadata"]["name"] for p in policies_for(daemon)] == ["reconciler"]
