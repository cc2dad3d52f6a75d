"""The JSON Schemas editors and PR checks use reject what the loader rejects, wherever a pattern
can say it, and never reject what the loader accepts. check-jsonschema reads the patterns as
ECMA-262 regular expressions, as editors do."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.declarations.fields import (
    CRON_PATTERN,
    DURATION_PATTERN,
    check_cron,
    parse_duration,
)
from reconciler.declarations.limits import MAX_DURATION_SECONDS
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
    "a timeout of 31 days": {"timeout": "31d"},
    "a timeout of 721 hours": {"timeout": "721h"},
    "a timeout of 2592001 seconds": {"timeout": "2592001s"},
    "a file named .": {"files": {".": "x"}},
    "a file named ./": {"files": {"./": "x"}},
    "a cron minute of 99": {"schedule": "99 * * * *"},
    "a cron hour of 24": {"schedule": "0 24 * * *"},
    "a cron day of 0": {"schedule": "0 0 0 * *"},
    "a cron day of 32 in a list": {"schedule": "0 0 1,32 * *"},
    "a cron month of 13": {"schedule": "0 0 1 13 *"},
    "a cron month that is no month's name": {"schedule": "0 0 1 jam *"},
    "a cron weekday of 8": {"schedule": "0 0 * * 8"},
    "a cron weekday name of four letters": {"schedule": "0 0 * * mond"},
    "a cron step of 0": {"schedule": "*/0 * * * *"},
    "a cron step longer than the hour": {"schedule": "*/60 * * * *"},
    "a cron range ending out of range": {"schedule": "0 0-24 * * *"},
    "a cron with six fields": {"schedule": "0 0 3 * * *"},
    "a cron with four fields": {"schedule": "0 3 * *"},
    "a cron restricting day of month and day of week": {"schedule": "0 3 1 * mon"},
    "a cron with an empty list item": {"schedule": "0,,5 3 * * *"},
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
    "a timeout of 30 days in hours": {"timeout": "720h"},
    "a timeout of 30 days and no more": {"timeout": "030d"},
    "a file named ...": {"files": {"...": "x"}},
    "a cron of every form": {"schedule": "0,15-45/15 */2 1-31/10,last JAN-jun,12 *"},
    "a cron with weekday names and numbers": {"schedule": "59 23 * * SUN,1-fri/2,7"},
    "a cron with leading zeros and spaces": {"schedule": " 00  03 * * 07 "},
}


# Labels, in metadata: key → value.
BROKEN_LABELS: dict[str, dict[str, Any]] = {
    "a label key with a space": {"bad key": "x"},
    "a label key with two slashes": {"a/b/c": "x"},
    "a label prefix in capitals": {"Example.com/team": "x"},
    "a label name of 64 characters": {"n" * 64: "x"},
    "a label value of 64 characters": {"team": "v" * 64},
    "a label value starting with a dash": {"team": "-x"},
    "a negative number as a label value": {"team": -1},
}
VALID_LABELS: dict[str, dict[str, Any]] = {
    "labels with prefixes, numbers and an empty value": {
        "app.kubernetes.io/name": "report", "team": 3, "Tier_1.a": "", "n" * 63: "v" * 63},
}


def _task(spec: dict[str, Any], labels: dict[str, Any] | None = None) -> dict[str, Any]:
    document = copy.deepcopy(_TASK)
    document["spec"].update(spec)
    if labels is not None:
        document["metadata"]["labels"] = labels
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


@pytest.mark.parametrize("labels", BROKEN_LABELS.values(), ids=BROKEN_LABELS.keys())
def test_the_schema_rejects_the_labels_the_loader_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: dict[str, Any]
) -> None:
    path = _write(tmp_path / "decl", _task({}, labels))
    code, _, err = cli(capsys, "validate", str(path.parent))
    assert code == 1, err
    assert not _schema_accepts(path)


@pytest.mark.parametrize("labels", VALID_LABELS.values(), ids=VALID_LABELS.keys())
def test_the_schema_accepts_the_labels_the_loader_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: dict[str, Any]
) -> None:
    path = _write(tmp_path / "decl", _task({}, labels))
    code, out, err = cli(capsys, "validate", str(path.parent))
    assert code == 0, out + err
    assert _schema_accepts(path), json.dumps(labels)


@pytest.mark.parametrize("spec", VALID.values(), ids=VALID.keys())
def test_the_schema_accepts_what_the_loader_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: dict[str, Any]
) -> None:
    path = _write(tmp_path / "decl", _task(spec))
    code, out, err = cli(capsys, "validate", str(path.parent))
    assert code == 0, out + err
    assert _schema_accepts(path), json.dumps(spec)


# Cron fields made of the pieces the loader reads, in range and out of it: numbers on
# either side of every field's bounds come often.
_NUMBERS = st.one_of(st.sampled_from([0, 1, 6, 7, 8, 11, 12, 13, 23, 24, 30, 31, 32, 59, 60]),
                     st.integers(0, 99)).map(str)
_CRON_SPANS = st.one_of(
    st.sampled_from(["*", "last", "LAST", "jan", "Dec", "feb-mar", "sun", "MON", "fri-sat",
                     "tue-1", "foo"]),
    _NUMBERS,
    _NUMBERS.map(lambda n: f"0{n}"),
    st.tuples(_NUMBERS, _NUMBERS).map("-".join),
)
_CRON_ITEMS = st.tuples(_CRON_SPANS, st.one_of(st.just(""), _NUMBERS.map(lambda s: f"/{s}")))
_CRON_FIELD = st.lists(_CRON_ITEMS.map("".join), min_size=1, max_size=3).map(",".join)
# What the loader refuses that a pattern cannot say: these are left to the loader.
_BEYOND_A_PATTERN = ("must not be higher than the maximum", "runs backwards",
                     "is higher than the total range", "it never fires")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 4), _CRON_FIELD)
def test_the_cron_pattern_accepts_what_the_loader_accepts(position: int, drawn: str) -> None:
    """And what it accepts that the loader refuses is beyond a pattern (a range that runs
    backwards, a step longer than its range, a day no month has). One field is drawn, the
    others are `*`."""
    fields = ["*"] * 5
    fields[position] = drawn
    expression = " ".join(fields)
    matches = re.search(CRON_PATTERN, expression) is not None
    refused = _refusal(expression)
    if refused is None:
        # A step after a month name is dropped by the loader's cron library, unread: the
        # pattern refuses it rather than accept what does nothing.
        assert matches or re.search(r"[a-z]/\d", expression.lower()), expression
    else:
        assert not matches or any(reason in refused for reason in _BEYOND_A_PATTERN), refused


def _refusal(expression: str) -> str | None:
    """Why the loader refuses a cron expression, or None when it accepts it."""
    try:
        check_cron(expression)
    except ValueError as err:
        return str(err)
    return None


@pytest.mark.parametrize("position", range(5), ids=["minute", "hour", "day", "month", "weekday"])
def test_the_cron_pattern_bounds_every_field_as_the_loader_does(position: int) -> None:
    """Every number up to 99 in one field, alone, with leading zeros and as a step: the
    pattern and the loader agree on each."""
    disagree = []
    for number in range(100):
        for drawn in (str(number), f"00{number}", f"*/{number}", f"{number}-{number}"):
            fields = ["*"] * 5
            fields[position] = drawn
            expression = " ".join(fields)
            accepted = _refusal(expression) is None
            if accepted != (re.search(CRON_PATTERN, expression) is not None):
                disagree.append((expression, accepted))
    assert not disagree


@pytest.mark.parametrize(("unit", "seconds"), [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)])
def test_the_duration_pattern_bounds_each_unit_as_the_loader_does(unit: str, seconds: int) -> None:
    """A duration of one part: the pattern and the loader agree on either side of the
    limit, and on zero."""
    limit = MAX_DURATION_SECONDS // seconds
    disagree = []
    for number in (0, 1, limit - 1, limit, limit + 1, limit * 10):
        for written in (f"{number}{unit}", f"00{number}{unit}"):
            try:
                parse_duration(written)
                accepted = True
            except ValueError:
                accepted = False
            if accepted != (re.search(DURATION_PATTERN, written) is not None):
                disagree.append((written, accepted))
    assert not disagree
