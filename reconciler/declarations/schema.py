"""JSON Schemas of the declaration kinds, generated from the models.

Editors use them through a yaml-language-server modeline at the top of a file:

    # yaml-language-server: $schema=../schemas/task.json

One file per kind, plus `reconciler.json` for files that mix kinds (it picks the kind's
schema by `kind`). The committed copies in `schemas/` are checked against these by a test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from reconciler.declarations.models import DefaultsDocument, StackDocument, TaskDocument
from reconciler.types import API_VERSION

DRAFT = "https://json-schema.org/draft/2020-12/schema"

AnyDocument = Annotated[
    TaskDocument | StackDocument | DefaultsDocument, Field(discriminator="kind")
]

_KINDS: dict[str, tuple[Any, str, str]] = {
    "task.json": (TaskDocument, "Task", "A reconciler Task: a container run once per version "
                  "of its declaration, and optionally on a cron schedule."),
    "stack.json": (StackDocument, "Stack", "A reconciler Stack: an OpenTofu/Terraform root "
                   "module applied on change and planned on a schedule for drift."),
    "defaults.json": (DefaultsDocument, "Defaults", "Defaults merged under every Task and "
                      "Stack of the repository (at most one per repository)."),
    "reconciler.json": (AnyDocument, "Declaration", f"Any {API_VERSION} declaration: Task, "
                        "Stack or Defaults, chosen by `kind`."),
}


class _Generator(GenerateJsonSchema):
    """Field titles are derived from Python names ("Dependson"): noise in an editor that
    already shows the key, so they are left out; descriptions say what matters."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for every kind and for any kind."""
    out: dict[str, dict[str, Any]] = {}
    for name, (model, title, description) in _KINDS.items():
        generated = TypeAdapter(model).json_schema(by_alias=True, schema_generator=_Generator)
        out[name] = {
            "$schema": DRAFT,
            "title": f"{title} ({API_VERSION})",
            "description": description,
            **{k: v for k, v in generated.items() if k not in ("title", "description")},
        }
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(out: Path) -> list[Path]:
    """Write every schema into `out` (created if needed); the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, schema in schemas().items():
        path = out / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
