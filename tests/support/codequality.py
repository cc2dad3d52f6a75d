"""GitLab's Code Quality report as GitLab's documentation describes it ("Code Quality report
format"), written down as a JSON Schema: GitLab publishes none. Every field it lists as one a
report must have is required here, with its type; `severity` is one of the five it names."""

from __future__ import annotations

from typing import Any

SEVERITIES = ["info", "minor", "major", "critical", "blocker"]

CODE_QUALITY_REPORT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "array",
    "items": {
        "type": "object",
        "required": ["description", "check_name", "fingerprint", "severity", "location"],
        "properties": {
            "description": {"type": "string", "minLength": 1},
            "check_name": {"type": "string", "minLength": 1},
            "fingerprint": {"type": "string", "minLength": 1},
            "severity": {"enum": SEVERITIES},
            "location": {
                "type": "object",
                "required": ["path", "lines"],
                "properties": {
                    # Relative to the repository's root, with no leading `./` or `/`.
                    "path": {"type": "string", "pattern": r"^(?!\./)(?!/)\S"},
                    "lines": {
                        "type": "object",
                        "required": ["begin"],
                        "properties": {"begin": {"type": "integer", "minimum": 1}},
                    },
                },
            },
        },
    },
}
