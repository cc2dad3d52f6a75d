"""The variables that tell a run which run it is. Both executors set them last, over the spec's
own `env`, so a command (or a stack's engine) sees the same identity locally and on Kubernetes.
"""

from __future__ import annotations

from reconciler.runs import RunRequest


def run_identity(request: RunRequest) -> dict[str, str]:
    entry = request.entry
    return {
        "RECONCILER_RUN_ID": request.run_id,
        "RECONCILER_ENTRY": entry.id,
        "RECONCILER_OPERATION": request.operation.value,
        "RECONCILER_TRIGGER": request.trigger.value,
        "RECONCILER_ATTEMPT": str(request.attempt),
        "RECONCILER_REVISION": request.revision,
        "RECONCILER_SPEC_HASH": entry.spec_hash,
    }
