"""Prometheus Operator objects checked against the operator's CRD schemas, offline.

The schemas come as pydantic models generated from the CRDs (`cloudcoil-models-prometheus-
operator`, installed under .tools/python by scripts/install-test-deps.sh). Those models accept
unknown fields, so `unknown_fields` walks an object against them the way the API server's
structural schema pruning would, and reports every field the CRD does not define.
"""

from __future__ import annotations

import importlib
import sys
import types
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, RootModel

from tests.deploy.support import REPO

MODELS = REPO / ".tools" / "python"


@cache
def crd_models() -> types.ModuleType:
    if not (MODELS / "cloudcoil").is_dir():
        pytest.fail("the CRD models are missing: run `bash scripts/install-test-deps.sh`")
    if str(MODELS) not in sys.path:
        sys.path.append(str(MODELS))
    return importlib.import_module("cloudcoil.models.prometheus_operator.v1")


def unknown_fields(annotation: Any, value: Any, where: str = "") -> list[str]:
    """Paths of `value` that `annotation` (a model, or a type built from models) lacks."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return unknown_fields(args[0], value, where)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        return unknown_fields((models or options)[0], value, where) if options else []
    if origin is list and isinstance(value, list):
        return [p for i, item in enumerate(value)
                for p in unknown_fields(args[0], item, f"{where}[{i}]")]
    if origin is dict and isinstance(value, dict):
        return [p for key, item in value.items()
                for p in unknown_fields(args[1], item, f"{where}.{key}")]
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return []
    if issubclass(annotation, RootModel):
        return unknown_fields(annotation.model_fields["root"].annotation, value, where)
    if not isinstance(value, dict):
        return []
    fields = {(f.alias or name): f for name, f in annotation.model_fields.items()}
    problems = []
    for key, item in value.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            problems.append(path)
        else:
            problems += unknown_fields(fields[key].annotation, item, path)
    return problems


def crd_problems(obj: dict[str, Any]) -> list[str]:
    """Why the operator's CRD would reject or prune `obj`; [] when it would not."""
    model = getattr(crd_models(), obj["kind"])
    try:
        model.model_validate(obj)
    except ValueError as error:
        return [str(error)]
    return [f"unknown field {path}" for path in unknown_fields(model, obj)]
