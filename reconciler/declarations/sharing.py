"""One copy of what thousands of validated models hold alike.

Every pydantic model records the names of the fields its input set
(`model_fields_set`), in a set of its own: 1.8 KB per Task, a fifth of the memory of a
loaded repository, although a repository's documents set the same few combinations of
fields. Frozen models never add to that set (and `model_copy` copies it before it does), so
models with equal sets can share one.
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

from pydantic import BaseModel

_MAX_SHARED = 4096
"""Distinct sets kept for sharing; beyond that (never seen in practice), models keep their
own."""
_SHARED: dict[frozenset[str], set[str]] = {}


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
