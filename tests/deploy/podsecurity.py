"""The `restricted` Pod Security Standard as a function, so a pod spec is checked before a
cluster's admission controller rejects it (the reconciler namespace enforces `restricted`)."""

from __future__ import annotations

from typing import Any

RESTRICTED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
})
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every rule of the restricted profile (baseline included) that `pod` breaks."""
    problems: list[str] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"pod sets {field}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has type {sorted(kinds)}")
    pod_security = pod.get("securityContext", {})
    containers = [*pod.get("initContainers", []), *pod.get("containers", [])]
    for container in containers:
        problems += _container_violations(container, pod_security)
    return problems


def _container_violations(container: dict[str, Any], pod_security: dict[str, Any]) -> list[str]:
    name = container["name"]
    security = container.get("securityContext", {})
    problems: list[str] = []
    if security.get("privileged"):
        problems.append(f"{name}: privileged")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation is not false")
    if not security.get("runAsNonRoot", pod_security.get("runAsNonRoot")):
        problems.append(f"{name}: runAsNonRoot is not true")
    if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
        problems.append(f"{name}: runs as UID 0")
    seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
    if seccomp.get("type") not in ALLOWED_SECCOMP:
        problems.append(f"{name}: seccompProfile is not RuntimeDefault or Localhost")
    capabilities = security.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        problems.append(f"{name}: capabilities do not drop ALL")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
        problems.append(f"{name}: adds capabilities {capabilities['add']}")
    if any("hostPort" in port for port in container.get("ports", [])):
        problems.append(f"{name}: uses a hostPort")
    return problems
