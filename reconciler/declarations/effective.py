"""Effective specs (Defaults merged under each entry) and spec hashes.

The spec hash decides when something runs again, so it must change exactly when what would
run changes:

- It is computed from the effective spec dumped without the fields left at their default
  values, so a later version of reconciler that adds an optional field does not change every
  hash (and re-run everything on upgrade). Writing a field with its default value is the same
  as leaving it out.
- It includes what Defaults contribute outside the spec but that changes how the entry runs:
  the namespace, the image pull secrets and, for a Stack, a runner image set explicitly.
- It includes the Git ids of the repository folders and files the entry uses (`sources`).
- Key order, comments and formatting of the YAML do not matter (canonical JSON).
- It leaves out the control fields (`CONTROL_FIELDS`): they say whether and when a version may
  run (suspend, windows) or which plan is approved, not what runs, so suspending, resuming or
  approving never makes a new version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from reconciler.declarations.bases import EntrySpec
from reconciler.declarations.fields import parse_duration
from reconciler.declarations.models import DefaultsSpec, ResourceList, Resources, spec_kind

DEFAULT_TIMEOUT_SECONDS = 3600
CONTROL_FIELDS = frozenset({"suspend", "windows", "approvedPlan"})
"""Spec fields (by YAML name) outside the spec hash."""


def effective_spec(spec: EntrySpec, defaults: DefaultsSpec) -> EntrySpec:
    """`spec` with Defaults merged under it: env key by key (the entry wins), resources
    request by request and limit by limit, the scalar fields and node placement when the
    entry leaves them out, and what the kind takes from Defaults for its own fields."""
    update: dict[str, Any] = {
        "env": {**defaults.env, **spec.env},
        "resources": _merge_resources(defaults.resources, spec.resources),
        "timeout": spec.timeout or defaults.timeout,
        "service_account_name": spec.service_account_name or defaults.service_account_name,
        "node_selector": spec.node_selector or dict(defaults.node_selector),
        "tolerations": spec.tolerations or list(defaults.tolerations),
        **spec.own_defaults(defaults),
    }
    if all(getattr(spec, name) == value for name, value in update.items()):
        # Defaults add nothing: the spec as declared is the effective one. Sharing it
        # saves a copy of every spec of a repository that has no Defaults.
        return spec
    return spec.model_copy(update=update)


def _merge_resources(under: Resources | None, over: Resources | None) -> Resources | None:
    if under is None or over is None:
        merged = over or under
    else:
        merged = Resources(
            requests=_merge_list(under.requests, over.requests),
            limits=_merge_list(under.limits, over.limits),
        )
    # Nothing requested and nothing limited is the same as no resources at all.
    if merged is None or not (_values(merged.requests) or _values(merged.limits)):
        return None
    return merged


def _merge_list(under: ResourceList, over: ResourceList) -> ResourceList:
    return ResourceList.model_validate({**_values(under), **_values(over)})


def _values(resources: ResourceList) -> dict[str, Any]:
    return resources.model_dump(by_alias=True, exclude_none=True)


def timeout_seconds(spec: EntrySpec) -> int:
    """The effective timeout in seconds (Defaults are already merged into `spec`)."""
    if spec.timeout is None:
        return DEFAULT_TIMEOUT_SECONDS
    return int(parse_duration(spec.timeout).total_seconds())


def hash_material(
    spec: EntrySpec, defaults: DefaultsSpec, sources: Mapping[str, str]
) -> dict[str, Any]:
    """Everything the spec hash covers, as JSON-ready data. `spec` is the effective spec."""
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for name in CONTROL_FIELDS.intersection(dumped):
        del dumped[name]
    if "dependsOn" in dumped:
        # Order and repetition in dependsOn mean nothing: reordering must not re-run.
        dumped["dependsOn"] = sorted(set(dumped["dependsOn"]))
    material: dict[str, Any] = {
        "kind": spec_kind(spec).value,
        "spec": dumped,
    }
    if defaults.namespace:
        material["namespace"] = defaults.namespace
    if defaults.image_pull_secrets:
        material["imagePullSecrets"] = list(defaults.image_pull_secrets)
    engine = spec.engine_to_run()
    if engine is not None:
        chosen = defaults.runner_images.model_dump(exclude_defaults=True).get(engine)
        if chosen:
            material["runnerImage"] = chosen
    if sources:
        material["sources"] = dict(sources)
    return material


def spec_hash(spec: EntrySpec, defaults: DefaultsSpec, sources: Mapping[str, str]) -> str:
    canonical = json.dumps(
        hash_material(spec, defaults, sources),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
