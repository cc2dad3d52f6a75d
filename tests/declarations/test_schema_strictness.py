"""The JSON Schemas editors and PR checks use reject what the loader rejects, wherever a pattern
can say it, and never reject what the loader accepts. check-jsonschema reads the patterns as
ECMA-262 regular expressions, as editors do."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.support.commands import cli

ROOT = Path(__file__).resolve().parents[2]
TASK_SCHEMA = ROOT / "schemas" / "task.json"

_TASK = {"apiVersion": "reconciler.io/v1alpha1", "kind": "Task", "metadata": {"name": "t"},
         "spec": {"command": ["true"]}}

BROKEN: dict[str, dict[str, Any]] = {
    "a quantity that is not one": {"resources": {"requests": {"cpu": "lots"}}},
    "a quantity with an unknown unit": {"resources": {"limits": {"memory": "12XB"}}},
    "an env name starting with a digit": {"env": {"1BAD": "x"}},
    "an env name with a dash": {"env": {"A-B": "x"}},
    "a secretEnv name with a dash": {"secretEnv": {"BAD-NAME": {"secret": "s", "key": "k"}}},
    "a secret name in capitals": {"secretEnv": {"A": {"secret": "Bad_Secret", "key": "k"}}},
    "a secret key with a space": {"secretEnv": {"A": {"secret": "s", "key": "bad key"}}},
    "an absolute file name": {"files": {"/etc/passwd": "x"}},
    "a file name leaving the folder": {"files": {"../x": "x"}},
    "a copied file outside the repository": {"files": {"x": {"path": "a/../../etc/passwd"}}},
    "a zero timeout": {"timeout": "0s"},
    "an empty timeout": {"timeout": ""},
    "a credentials secret in capitals": {
        "repository": {"url": "https://git.example.com/a.git", "credentialsSecret": "Bad_Name"}},
    "a service account with an underscore": {"serviceAccountName": "bad_account"},
}

VALID: dict[str, dict[str, Any]] = {
    "quantities of every form": {"resources": {
        "requests": {"cpu": "500m", "memory": "1.5Gi"}, "limits": {"cpu": 2, "memory": "1e9"}}},
    "env names with underscores": {"env": {"_A1": "x", "lower_case": "y"}},
    "a secret name with dots": {"secretEnv": {"A": {"secret": "app.creds-1", "key": "a.b_c-d"}}},
    "file names in folders and hidden": {"files": {"conf/a.txt": "x", ".hidden": "y",
                                                   "x..y": "z", "./in-here": "w"}},
    "durations with a leading zero": {"timeout": "01h30m"},
    "a service account with dots": {"serviceAccountName": "runner.team-a"},
}


def _task(spec: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(_TASK)
    document["spec"].update(spec)
    return document


def _write(folder: Path, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "task.yaml"
    with path.open("w") as out:
        YAML().dump(document, out)
    return path


def _schema_accepts(path: Path) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(TASK_SCHEMA), str(path)],
        capture_output=True, text=True, timeout=120, check=False)
    return done.returncode == 0


@pytest.mark.parametrize("spec", BROKEN.values(), ids=BROKEN.keys())
def test_the_schema_rejects_what_the_loader_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: dict[str, Any]
) -> None:
    path = _write(tmp_path / "decl", _task(spec))
    code, _, err = cli(capsys, "validate", str(path.parent))
    assert code == 1, err
    assert not _schema_accepts(path)


@pytest.mark.parametrize("spec", VALID.values(), ids=VALID.keys())
def test_the_schema_accepts_what_the_loader_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: dict[str, Any]
) -> None:
    path = _write(tmp_path / "decl", _task(spec))
    code, out, err = cli(capsys, "validate", str(path.parent))
    assert code == 0, out + err
    assert _schema_accepts(path), json.dumps(spec)
