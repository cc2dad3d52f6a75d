"""A Task's `files` as a ConfigMap, mounted read-only at `/task` (pure).

ConfigMap keys are flat, so nested paths get a flattened key and their path back through the
volume's `items`; a ConfigMap holds at most 1 MiB, so larger files are an error that says to
put them in a repository instead.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from reconciler.executors.kubernetes import labels as lbl
from reconciler.runs import RunRequest

MAX_CONFIGMAP_BYTES = 1024 * 1024
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class ManifestError(ValueError):
    """An entry that cannot run on Kubernetes as declared (no image, files too large)."""


def file_keys(files: dict[str, str]) -> dict[str, str]:
    """ConfigMap keys are flat (`[-._a-zA-Z0-9]+`); nested names get a flattened key and
    their path back through the volume's `items`. Deterministic, collision-free."""
    keys: dict[str, str] = {}
    used: set[str] = set()
    for path in sorted(files):
        key = re.sub(r"[^-._a-zA-Z0-9]", "_", path)
        if key in used or key in (".", "..") or len(key) > 200 or not _CONFIG_KEY.match(key):
            digest = hashlib.sha256(path.encode()).hexdigest()[:12]
            key = f"{key[:180]}-{digest}"
        used.add(key)
        keys[path] = key
    return keys


def config_map_of(
    request: RunRequest, namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    entry = request.entry
    keys = file_keys(entry.files)
    data = {keys[path]: content for path, content in entry.files.items()}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > MAX_CONFIGMAP_BYTES:
        raise ManifestError(
            f"{entry.id}: files total {size} bytes; on Kubernetes they travel in a ConfigMap, "
            f"which holds at most {MAX_CONFIGMAP_BYTES} bytes (put large files in the "
            "repository and use spec.repository)"
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": request.run_id,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": {lbl.ANNOTATION_ENTRY: entry.id},
        },
        "immutable": True,
        "data": dict(sorted(data.items())),
    }
