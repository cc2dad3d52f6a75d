"""Connecting to the API server, and the error vocabulary of the calls made over it.

Calls go through the official client's typed APIs with `_preload_content=False`, so objects stay
the raw JSON the API server sent (the executor reads a handful of fields; deserializing whole
models would cost more and could drop fields newer than the client).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

MERGE_PATCH = "application/merge-patch+json"
"""The client defaults a dict body to JSON Patch (a list of operations); a merge patch must be
asked for."""

TRANSIENT_STATUSES = frozenset({0, 408, 429, 500, 502, 503, 504})
_FORBIDDEN = re.compile(r'cannot (\w+) resource "([^"]+)"')


class KubernetesConfigError(ValueError):
    """No usable way to reach a cluster: the message says what was tried."""


def connect(kubeconfig: Path | None = None, *, context: str | None = None) -> ApiClient:
    """An explicit kubeconfig wins; otherwise the pod's service account when running in a
    cluster, then `$KUBECONFIG` or `~/.kube/config`."""
    if kubeconfig is None:
        configuration = Configuration()
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        except config.ConfigException:
            pass
        else:
            return ApiClient(configuration)
    try:
        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig is not None else None, context=context)
    except (config.ConfigException, OSError) as err:
        where = f"--kubeconfig {kubeconfig}" if kubeconfig is not None else (
            "not running in a cluster, and no $KUBECONFIG or ~/.kube/config")
        raise KubernetesConfigError(f"cannot reach Kubernetes: {where}: {err}") from None
    return client


def read_json(response: Any) -> dict[str, Any]:
    """The body of a `_preload_content=False` response."""
    value = json.loads(response.data or b"{}")
    return value if isinstance(value, dict) else {}


def events(response: Any) -> Iterator[dict[str, Any]]:
    """The events of a watch response, one JSON object per line."""
    for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
        if line.strip():
            event = json.loads(line)
            if isinstance(event, dict):
                yield event


def status_of(err: BaseException) -> int | None:
    return int(err.status or 0) if isinstance(err, ApiException) else None


def is_transient(err: BaseException) -> bool:
    """Worth retrying unchanged: the API server or the network, not the request."""
    if isinstance(err, ApiException):
        return int(err.status or 0) in TRANSIENT_STATUSES
    return isinstance(err, urllib3.exceptions.HTTPError | OSError | TimeoutError)


def message_of(err: BaseException) -> str:
    """The API server's own message (`jobs.batch "x" is forbidden: ...`), else the error."""
    if isinstance(err, ApiException):
        try:
            body = json.loads(err.body or "")
        except (TypeError, ValueError):
            body = None
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
        return f"{err.status} {err.reason}"
    return f"{type(err).__name__}: {err}"


def close(response: Any) -> None:
    """Unblock a reader of `response` in another thread, then release it."""
    shutdown = getattr(response, "shutdown", None)
    try:
        if shutdown is not None:
            shutdown()
        response.close()
        response.release_conn()
    except Exception:
        return


def request_json(
    api: ApiClient,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """One call with a JSON body sent exactly as given. The typed models re-serialize
    timestamps with `isoformat()`, which drops the microseconds a Lease's MicroTime fields
    must carry; a Lease goes through here instead."""
    method_, url, headers, payload, post = api.param_serialize(
        method=method, resource_path=path,
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=body, auth_settings=["BearerToken"],
    )
    response: Any = api.call_api(method_, url, headers, payload, post, _request_timeout=timeout)
    response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(
            http_resp=response, body=response.data.decode("utf-8", errors="replace"), data=None
        )
    return read_json(response)


def forbidden_in(namespace: str, message: str, *, verb: str, resource: str) -> str:
    """What a run is told when RBAC keeps the daemon out of its namespace. The API server
    names the verb and resource it refused (`cannot list resource "jobs"`); those win."""
    found = _FORBIDDEN.search(message)
    if found is not None:
        verb, resource = found.group(1), found.group(2)
    return (f"namespace {namespace}: forbidden by RBAC (the daemon's service account may not "
            f"{verb} {resource} there)")
