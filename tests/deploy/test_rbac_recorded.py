"""The daemon's Role against a recorded session: every Kubernetes request the executor and
leader election make while the tests of tests/kubernetes and the Kubernetes cases of the shared
executor suite drive them against the API emulator
(through the official client, over HTTP) needs a permission the Role grants, and the Role
grants nothing beyond those requests and what the Role the executor creates for each stack
grants (which the API server lets the daemon create only if it holds it itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.apirecorder import ENV
from tests.deploy.rbac import permission
from tests.deploy.support import REPO
from tests.deploy.test_rbac import (
    daemon_role,
    escalation_permissions,
    stack_role,
    static_permissions,
)

RECORD_TIMEOUT = 480
SUITES = ("tests/kubernetes", "tests/executors")
"""The emulator tests of the executor and leader election, and the shared executor suite,
whose Kubernetes cases (`-k kubernetes`) run the executor against the same emulator."""


def record_requests(workdir: Path) -> list[tuple[str, str]]:
    """Every request reconciler's code made while the Kubernetes tests ran."""
    record = workdir / "requests.jsonl"
    record.touch()
    # Those tests also run on their own in the suite, where a failure is reported as theirs;
    # here one more try keeps a timing hiccup under load from failing the RBAC check too.
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
             "-p", "tests.deploy.apirecorder", "--basetemp", str(workdir / "tmp"),
             "-k", "kubernetes", *SUITES],
            cwd=REPO, env={**os.environ, ENV: str(record)},
            capture_output=True, text=True, timeout=RECORD_TIMEOUT // 2, check=False,
        )
        if result.returncode == 0:
            break
    summary = "\n".join(result.stdout.splitlines()[-15:])
    assert result.returncode == 0, (
        "the RBAC check needs a passing run of the Kubernetes tests, which drive the "
        f"executor and leader election against the API emulator:\n{summary}\n"
        f"{result.stderr[-2000:]}")
    requests = [(str(m), str(u)) for m, u in map(json.loads, record.read_text().splitlines())]
    assert requests, "no Kubernetes request was recorded"
    return requests


# One test, so that under pytest-xdist the Kubernetes tests are replayed once, not per worker.
@pytest.mark.timeout(RECORD_TIMEOUT + 60)
def test_the_role_grants_exactly_what_the_code_requests(tmp_path: Path) -> None:
    recorded = record_requests(tmp_path)
    # A namespaced Role is enough only when no request is cluster-wide.
    for method, url in recorded:
        assert "/namespaces/" in url, f"a cluster-wide request: {method} {url}"
    used = {permission(method, url) for method, url in recorded}
    # Creating the stack Role needs every permission it grants (RBAC escalation rules); what it
    # grants is limited by name, to the stack's own state Secret and lock Lease.
    assert all(len(rule["resourceNames"]) == 1 for rule in stack_role()["rules"])
    used |= escalation_permissions()
    role = daemon_role()
    assert not used - role, (
        f"requests deploy/base/role.yaml does not allow: {sorted(map(str, used - role))}")
    assert not role - used, f"permissions no request needed: {sorted(map(str, role - used))}"
    # A typed call the tests never make could need a permission the recording cannot show.
    unexercised = {str(p): sorted(f) for p, f in static_permissions().items() if p not in used}
    assert not unexercised, f"client calls no Kubernetes test makes: {unexercised}"
