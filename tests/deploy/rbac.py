"""Kubernetes permissions as (API group, resource, verb): from HTTP requests, from the official
client's typed methods, and from Role rules, so the three can be compared."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import kubernetes.client


class Permission(NamedTuple):
    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}" + (f".{self.group}" if self.group else "")


_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
_CLIENT_METHOD = re.compile(
    r"^(create|read|list|patch|replace|delete|delete_collection)_(namespaced_)?[a-z_]+$")


def permission(method: str, url: str) -> Permission:
    """The RBAC (group, resource, verb) a request needs, as the API server's authorizer
    derives it: GET on a collection is list (watch with ?watch), DELETE on one is
    deletecollection, subresources are `resource/sub`."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"]:
        group, rest = "", segments[2:]
    elif segments[:1] == ["apis"]:
        group, rest = segments[1], segments[3:]
    else:
        raise ValueError(f"not a resource request: {method} {url}")
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource, name, sub = [*rest, None, None][:3]
    assert resource is not None, url
    if sub:
        resource = f"{resource}/{sub}"
    watch = parse_qs(parts.query).get("watch", ["false"])[-1] in ("true", "1")
    method = method.upper()
    if method == "GET":
        verb = "get" if name else ("watch" if watch else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _METHOD_VERBS[method]
    return Permission(group, resource, verb)


def role_permissions(role: dict[str, Any]) -> set[Permission]:
    granted = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add(Permission(group, resource, verb))
    return granted


@cache
def _api_classes() -> tuple[type, ...]:
    # dir(), not vars(): the client package may load its API classes lazily.
    found = (getattr(kubernetes.client, k) for k in dir(kubernetes.client) if k.endswith("Api"))
    return tuple(v for v in found if isinstance(v, type))


def client_method_permission(name: str) -> Permission:
    """The permission a typed method of the official client needs, read from the request it
    builds (its generated `_<name>_serialize`: HTTP method and resource path)."""
    for api in _api_classes():
        serialize = getattr(api, f"_{name}_serialize", None)
        if serialize is None:
            continue
        source = inspect.getsource(serialize)
        method = re.search(r"method='(\w+)'", source)
        path = re.search(r"resource_path='([^']+)'", source)
        if method is None or path is None:
            raise LookupError(f"cannot read the request of {api.__name__}.{name}")
        return permission(method.group(1), re.sub(r"\{(\w+)\}", r"\1", path.group(1)))
    raise LookupError(f"no API class of the kubernetes client has {name}")


def client_calls(files: Iterable[Path]) -> dict[str, set[str]]:
    """Typed client methods named in the code (called, or passed on like an informer's list
    function), by method name → files."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and _CLIENT_METHOD.match(node.attr):
                found.setdefault(node.attr, set()).add(path.name)
    return found
