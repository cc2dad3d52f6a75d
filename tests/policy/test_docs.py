"""The policy shown in docs/policy.md is one the daemon loads, and one the published schema
accepts; the schema refuses what the loader refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
from ruamel.yaml import YAML

from reconciler.policy.file import load_policy

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    text = (ROOT / "docs" / "policy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    [policy] = [b for b in blocks if "kind: Policy" in b]
    return policy


def test_the_documented_policy_loads_and_matches_the_schema(tmp_path: Path) -> None:
    text = _example()
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    policy = load_policy(path)
    assert policy.spec.namespaces == ["runs", "data-*"]
    assert policy.spec.limits.memory == "8Gi"
    schema = json.loads((ROOT / "schemas" / "policy.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(YAML(typ="safe").load(text)))
    bad = {"apiVersion": "reconciler.io/v1alpha1", "kind": "Policy",
           "spec": {"serviceAcounts": ["runner"]}}
    assert list(validator.iter_errors(bad))
