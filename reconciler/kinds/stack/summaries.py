"""What a stack plan changes: the summary the runner builds from the engine's JSON plan.

Pure. The result the runner reports on its last line (`runs.StackResult`) carries these counts;
the executors parse that line back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler.runs import PlanChanges


class PlanSummary(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel,
        populate_by_name=True, serialize_by_alias=True,
    )

    changes: PlanChanges = Field(default_factory=PlanChanges)
    addresses: tuple[str, ...] = Field(
        default=(), description="Managed resources the plan would create, update or delete."
    )
    outputs: tuple[str, ...] = Field(
        default=(), description="Names of the root outputs the plan sets (never their values)."
    )


_QUIET_ACTIONS = ({"no-op"}, {"read"})


def summarize_plan(plan: Mapping[str, Any]) -> PlanSummary:
    """Counts and addresses from `show -json PLANFILE`, counted the way the engine's own
    `Plan: N to add, …` line counts them (a replacement is one add and one destroy).
    Nothing else is taken from the JSON: it holds variable and attribute values."""
    add = change = destroy = 0
    addresses: list[str] = []
    for item in plan.get("resource_changes") or ():
        if not isinstance(item, dict) or item.get("mode", "managed") != "managed":
            continue
        actions = set((item.get("change") or {}).get("actions") or ())
        if not actions or actions in _QUIET_ACTIONS:
            continue
        add += "create" in actions
        change += "update" in actions
        destroy += "delete" in actions
        addresses.append(str(item.get("address", "")))
    outputs = [
        name for name, item in (plan.get("output_changes") or {}).items()
        if isinstance(item, dict) and "delete" not in (item.get("actions") or ())
    ]
    return PlanSummary(
        changes=PlanChanges(add=add, change=change, destroy=destroy),
        addresses=tuple(sorted(addresses)),
        outputs=tuple(sorted(outputs)),
    )
