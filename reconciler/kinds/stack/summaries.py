"""What a stack run found: the plan's summary and the result the runner reports.

Pure: the runner builds these from the engine's JSON plan and prints the result on its last
line; the executors parse that line back into a `StackResult`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from reconciler.types import DriftState, Operation


class _Camel(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel,
        populate_by_name=True, serialize_by_alias=True,
    )


class PlanChanges(_Camel):
    add: int = Field(default=0, ge=0)
    change: int = Field(default=0, ge=0)
    destroy: int = Field(default=0, ge=0)

    @property
    def total(self) -> int:
        return self.add + self.change + self.destroy

    def __str__(self) -> str:
        return f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"


class PlanSummary(_Camel):
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


class StackResult(_Camel):
    """What a stack run reports on its `::reconciler-result::` line."""

    engine: str = Field(default="", description="opentofu or terraform.")
    version: str = Field(default="", description="The engine's version, e.g. 1.10.6.")
    operation: Operation
    changes: PlanChanges = Field(default_factory=PlanChanges)
    addresses: tuple[str, ...] = Field(default=(), description="Changed resource addresses.")
    drift: DriftState | None = Field(default=None, description="Set by drift runs only.")
    applied: bool = Field(default=False, description="True when a plan was applied.")
    error: str | None = Field(default=None, description="Why the run failed (redacted).")

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> StackResult | None:
        """The typed result of a parsed result line, or None when there is none (the runner
        died before reporting) or it is not one. Unknown keys (a newer runner) are ignored."""
        known = {f.alias or n for n, f in cls.model_fields.items()} | set(cls.model_fields)
        try:
            return cls.model_validate({k: v for k, v in result.items() if k in known})
        except ValidationError:
            return None

    def to_result(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
