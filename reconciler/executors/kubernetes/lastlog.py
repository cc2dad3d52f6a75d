"""`reconciler logs KIND/NAME` on Kubernetes: the whole log of an entry's newest run, read from
the cluster (its Job and pods), so it works from a laptop with a kubeconfig as well as in the
daemon's pod. Secret values the run could read are masked as in the daemon's own reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api

from reconciler.executors.kubernetes import labels as lbl
from reconciler.executors.kubernetes.client import connect, read_json
from reconciler.executors.kubernetes.phases import observe, secret_refs
from reconciler.executors.kubernetes.podlogs import PodLogs
from reconciler.executors.kubernetes.secretmask import SecretMasker
from reconciler.redact import redactor
from reconciler.types import EntryId, split_entry_id


def latest_log(
    entry: EntryId,
    *,
    namespace: str,
    kubeconfig: str | Path | None = None,
    api_client: ApiClient | None = None,
) -> str | None:
    """A header line and the log of `entry`'s newest Job in `namespace`; None when it has no
    Job there (never run, or cleaned up after `ttlSecondsAfterFinished`)."""
    client = api_client or connect(Path(kubeconfig) if kubeconfig else None)
    try:
        return _latest_log(client, entry, namespace)
    finally:
        if api_client is None:
            client.close()  # type: ignore[no-untyped-call]


def _latest_log(client: ApiClient, entry: EntryId, namespace: str) -> str | None:
    kind, name = split_entry_id(entry)
    batch: Any = BatchV1Api(client)
    core: Any = CoreV1Api(client)
    selector = f"{lbl.MANAGED_BY}={lbl.MANAGER},{lbl.ENTRY}={name},{lbl.KIND}={kind.prefix}"
    jobs = read_json(batch.list_namespaced_job(
        namespace, label_selector=selector, _preload_content=False)).get("items") or []
    runs = [(meta, job) for job in jobs if (meta := lbl.RunMeta.from_object(job)) is not None]
    if not runs:
        return None
    meta, job = max(runs, key=lambda pair: (pair[0].requested_at, pair[0].run_id))
    pods = read_json(core.list_namespaced_pod(
        namespace, label_selector=f"{lbl.RUN_ID}={meta.run_id}",
        _preload_content=False)).get("items") or []
    seen = observe(job, pods)
    header = (f"# {meta.run_id}: {meta.operation.value} {seen.state.value} "
              f"(attempt {meta.attempt}, commit {meta.revision[:12]})\n")
    withheld = SecretMasker(core, register=redactor.add).mask(namespace, secret_refs(job))
    if withheld is not None:
        return header + f"(log withheld: {redactor(withheld)})\n"
    return header + PodLogs(core, redact=redactor).full(namespace, pods)
