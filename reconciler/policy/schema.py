"""The JSON Schema of the Policy file, for editors (`schemas/policy.json`)."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from reconciler.policy.model import Policy
from reconciler.types import API_VERSION

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FILE_NAME = "policy.json"


class _Generator(GenerateJsonSchema):
    """No titles derived from Python names: editors show the key and the description."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def policy_schema() -> dict[str, Any]:
    generated = Policy.model_json_schema(by_alias=True, schema_generator=_Generator)
    return {
        "$schema": DRAFT,
        "title": f"Policy ({API_VERSION})",
        "description": "The operator's guardrails: what the declarations of a repository may "
        "ask for (reconciler run|validate|render --policy FILE).",
        **{k: v for k, v in generated.items() if k not in ("title", "description")},
    }
