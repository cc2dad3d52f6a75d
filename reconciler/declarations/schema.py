"""JSON Schemas of the declaration kinds, generated from the models.

Editors use them through a yaml-language-server modeline at the top of a file:

    # yaml-language-server: $schema=../schemas/task.json

One file per kind, plus `reconciler.json` for files that mix kinds (it picks the kind's
schema by `kind`), and one per JSON report (`validation-report.json`,
`declaration-diff.json`). The committed copies in `schemas/` are checked against these by a
test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from reconciler.declarations.models import DOCUMENT_MODELS
from reconciler.declarations.reports import DiffReport, ValidationReport
from reconciler.types import API_VERSION

DRAFT = "https://json-schema.org/draft/2020-12/schema"

# Built from the table of models, so it is a value for TypeAdapter rather than a static type.
AnyDocument: Any = Annotated[
    Union[tuple(DOCUMENT_MODELS.values())],  # noqa: UP007 - a union of a runtime tuple
    Field(discriminator="kind"),
]


def _any_description() -> str:
    *first, last = DOCUMENT_MODELS
    return f"Any {API_VERSION} declaration: {', '.join(first)} or {last}, chosen by `kind`."


_KINDS: dict[str, tuple[Any, str, str]] = {
    **{
        f"{kind.lower()}.json": (model, kind, model.schema_description)
        for kind, model in DOCUMENT_MODELS.items()
    },
    "reconciler.json": (AnyDocument, "Declaration", _any_description()),
}

# What `validate --format json` and `diff --format json` print, for PR tooling that reads them.
_REPORTS: dict[str, tuple[Any, str, str]] = {
    "validation-report.json": (ValidationReport, "ValidationReport", "What `reconciler "
                               "validate --format json` prints."),
    "declaration-diff.json": (DiffReport, "DeclarationDiff", "What `reconciler diff --format "
                              "json` prints."),
}


class _Generator(GenerateJsonSchema):
    """Field titles are derived from Python names ("Dependson"): noise in an editor that
    already shows the key, so they are left out; descriptions say what matters."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def dict_schema(self, schema: Any) -> Any:
        # A mapping whose keys have a pattern (env names, file names) comes out as
        # `patternProperties`, which alone lets any other key through; the loader does not.
        generated = super().dict_schema(schema)
        if "patternProperties" in generated and "additionalProperties" not in generated:
            generated["additionalProperties"] = False
        return generated


def schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for every kind, for any kind, and for the JSON reports."""
    out: dict[str, dict[str, Any]] = {}
    for name, (model, title, description) in {**_KINDS, **_REPORTS}.items():
        # Declarations are read (validation); reports are written (serialization).
        mode: JsonSchemaMode = "serialization" if name in _REPORTS else "validation"
        generated = TypeAdapter(model).json_schema(
            by_alias=True, schema_generator=_Generator, mode=mode)
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
