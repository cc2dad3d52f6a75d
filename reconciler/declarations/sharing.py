"""One copy of what thousands of validated models hold alike.

Every pydantic model records the names of the fields its input set
(`model_fields_set`), in a set of its own: 1.8 KB per Task, a fifth of the memory of a
loaded repository, although a repository's documents set the same few combinations of
fields. Frozen models never add to that set (and `model_copy` copies it before it does), so
models with equal sets can share one.

Likewise the small value models inside (resources, tolerations, images: models holding only
scalars and such models) are as often equal as not, and frozen: equal ones become one.
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from typing import Any, get_args

from pydantic import BaseModel

_MAX_SHARED = 4096
"""Distinct sets kept for sharing; beyond that (never seen in practice), models keep their
own."""
_SHARED: dict[frozenset[str], set[str]] = {}
_VALUES: dict[tuple[Any, ...], BaseModel] = {}
_SCALARS = (str, int, float, bool, type(None), Enum)


def share_field_sets(model: BaseModel) -> None:
    """Make the field sets of `model` and of the models inside it (directly, or in a list
    or mapping field) the shared ones."""
    stack = [model]
    while stack:
        current = stack.pop()
        own = current.__pydantic_fields_set__
        key = frozenset(own)
        shared = _SHARED.get(key)
        if shared is None and len(_SHARED) < _MAX_SHARED:
            shared = _SHARED[key] = own
        if shared is not None and shared is not own:
            object.__setattr__(current, "__pydantic_fields_set__", shared)
        fields = current.__dict__
        for name in _nesting(type(current)):
            value = fields[name]
            if isinstance(value, BaseModel):
                stack.append(value)
                equal = _shared_value(value)
                if equal is not value:
                    fields[name] = equal
            elif isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, BaseModel))
            elif isinstance(value, dict):
                stack.extend(v for v in value.values() if isinstance(v, BaseModel))


@cache
def _nesting(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` whose values can be or hold models."""
    return tuple(
        name for name, info in model.model_fields.items() if _holds_models(info.annotation)
    )


def _holds_models(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_models(arg) for arg in get_args(annotation))


def _shared_value(model: BaseModel) -> BaseModel:
    """The one model equal to `model` (fields, fields set and extras alike), when it holds
    only scalars and such models; else `model` itself."""
    key = _value_key(model)
    if key is None:
        return model
    shared = _VALUES.get(key)
    if shared is None:
        if len(_VALUES) >= _MAX_SHARED:
            return model
        shared = _VALUES[key] = model
    return shared


def _value_key(model: BaseModel) -> tuple[Any, ...] | None:
    parts: list[Any] = [type(model), frozenset(model.__pydantic_fields_set__)]
    extra = model.__pydantic_extra__ or {}
    for name, value in (*model.__dict__.items(), *sorted(extra.items())):
        if isinstance(value, BaseModel):
            inner = _value_key(value)
            if inner is None:
                return None
            parts.append((name, inner))
        elif isinstance(value, _SCALARS):
            # The type too: 1, 1.0 and True are equal, and are not the same value.
            parts.append((name, type(value), value))
        else:
            return None
    return tuple(parts)
