"""Stacks through the whole daemon with a real engine: apply on change, drift on schedule,
remediation, plan-only, prune, failures and dependencies."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.kinds.stack.launch import state_file
from tests.daemon.conftest import World, declaration

pytestmark = pytest.mark.engine

MODULE = """\
variable "size" {
  type = string
}

resource "terraform_data" "app" {
  input = var.size
}

resource "terraform_data" "db" {
  input = "db-${var.size}"
}
"""


def stack(name: str = "web", **spec: Any) -> str:
    spec.setdefault("path", f"stacks/{name}")
    spec.setdefault("vars", {"size": "small"})
    return declaration("Stack", name, **spec)


def module(name: str = "web", text: str = MODULE) -> dict[str, str]:
    return {f"stacks/{name}/main.tf": text}


def resources(w: World, name: str = "web") -> dict[str, Any]:
    path = state_file(w.state, name)
    if not path.exists():
        return {}
    state = json.loads(path.read_text())
    return {f"{r['type']}.{r['name']}": r["instances"][0]["attributes"]["input"]["value"]
            for r in state["resources"]}


def drift_state_by_hand(w: World, address: str, value: str, name: str = "web") -> None:
    """Someone changes the infrastructure outside Git (here: the recorded state)."""
    path = state_file(w.state, name)
    state = json.loads(path.read_text())
    kind, rname = address.split(".")
    for r in state["resources"]:
        if (r["type"], r["name"]) == (kind, rname):
            r["instances"][0]["attributes"]["input"]["value"] = value
    state["serial"] += 1
    path.write_text(json.dumps(state))


def test_apply_on_push_and_only_on_real_changes(world: Callable[..., World]) -> None:
    w = world({"web.yaml": stack(), **module()})
    w.settle()
    status = w.status("stack/web")
    assert (status["phase"], status["lastRun"]["operation"]) == ("Succeeded", "apply")
    assert status["changes"] == {"add": 2, "change": 0, "destroy": 0}
    assert status["engine"] in ("terraform", "opentofu")
    assert status["engineVersion"]
    assert resources(w) == {"terraform_data.app": "small", "terraform_data.db": "db-small"}
    applied = status["lastRun"]["id"]

    w.push({"README.md": "nothing to do with the stack\n"})
    w.settle()
    assert w.status("stack/web")["lastRun"]["id"] == applied

    w.push(module(text=MODULE.replace('"db-${var.size}"', '"database-${var.size}"')),
           "Rename the database (main.tf only)")
    w.settle()
    status = w.status("stack/web")
    assert (status["lastRun"]["trigger"], status["changes"]["change"]) == ("changed", 1)
    assert resources(w)["terraform_data.db"] == "database-small"


def test_scheduled_drift_check_then_remediation(world: Callable[..., World]) -> None:
    w = world({"web.yaml": stack(drift={"schedule": "*/5 * * * *", "remediate": True}),
               **module()})
    w.settle()
    # The apply just converged the infrastructure: in sync as of its end, before any check.
    assert w.status("stack/web")["drift"]["state"] == "InSync"
    drift_state_by_hand(w, "terraform_data.app", "huge")
    w.clock.advance(minutes=6)
    w.daemon.cycle(fetch=False)  # the drift check starts
    w.settle()
    status = w.status("stack/web")
    # remediate: true applied right after the check found drift, so it is back in sync,
    # and the record says which apply fixed it.
    assert status["drift"]["state"] == "InSync"
    assert status["lastRun"]["trigger"] == "remediate"
    assert status["drift"]["remediatedBy"] == status["lastRun"]["id"]
    assert resources(w)["terraform_data.app"] == "small"
    assert w.metric("reconciler_drift_detected", stack="web") == 0
    assert w.metric("reconciler_drift_checks_total", result="Drifted") == 1


def test_drift_is_reported_with_counts_and_addresses(world: Callable[..., World]) -> None:
    w = world({"web.yaml": stack(drift={"schedule": "*/5 * * * *"}), **module()})
    w.settle()
    drift_state_by_hand(w, "terraform_data.app", "huge")
    w.clock.advance(minutes=6)
    w.settle()
    drift = w.status("stack/web")["drift"]
    assert drift["state"] == "Drifted"
    assert drift["changes"] == {"add": 0, "change": 1, "destroy": 0}
    assert drift["addresses"] == ["terraform_data.app"]
    first = drift["firstDetectedAt"]
    assert w.metric("reconciler_drift_detected", stack="web") == 1
    w.clock.advance(minutes=5)
    w.settle()
    again = w.status("stack/web")["drift"]
    assert again["checkedAt"] > drift["checkedAt"]
    assert again["firstDetectedAt"] == first  # kept while the drift persists
    assert resources(w)["terraform_data.app"] == "huge"  # no remediate: nothing applied


def test_plan_only_never_applies(world: Callable[..., World]) -> None:
    w = world({"web.yaml": stack(apply="plan"), **module()})
    w.settle()
    status = w.status("stack/web")
    assert (status["phase"], status["lastRun"]["operation"]) == ("Planned", "plan")
    assert status["changes"]["add"] == 2
    assert resources(w) == {}


def test_prune_only_from_a_commit_that_loads_cleanly(world: Callable[..., World]) -> None:
    w = world({"web.yaml": stack(prune=True), **module(), "keep.yaml": stack("keep"),
               **module("keep")})
    w.settle()
    assert resources(w)
    w.push({"web.yaml": None, "keep.yaml": "apiVersion: reconciler.io/v1alpha1\nkind: [\n"},
           "Remove web, break keep")
    w.settle()
    status = w.status("stack/web")
    assert status["phase"] == "Orphaned"
    assert "load errors" in status["message"]
    assert resources(w)  # nothing destroyed
    assert w.status("stack/keep")["phase"] == "Invalid"

    w.push({"keep.yaml": stack("keep")}, "Fix keep")
    w.settle()
    status = w.status("stack/web")
    assert (status["phase"], status["lastRun"]["operation"]) == ("Orphaned", "destroy")
    assert status["message"] == "declaration removed; destroyed"
    assert resources(w) == {}
    assert resources(w, "keep")  # the other stack is untouched


def test_removed_stack_without_prune_is_orphaned_and_kept(world: Callable[..., World]) -> None:
    w = world({"web.yaml": stack(), **module()})
    w.settle()
    w.push({"web.yaml": None})
    w.settle()
    assert w.status("stack/web")["phase"] == "Orphaned"
    assert resources(w)


def test_invalid_hcl_fails_with_the_engine_error(world: Callable[..., World]) -> None:
    w = world({"web.yaml": stack(), **module(text='resource "terraform_data" "x" {\n')})
    w.settle()
    status = w.status("stack/web")
    assert status["phase"] == "Failed"
    assert "Error" in status["lastRun"]["logTail"]
    assert "main.tf" in status["lastRun"]["logTail"]


def test_stack_waits_for_its_dependency(world: Callable[..., World]) -> None:
    seed = f"{sys.executable} -c \"print('seeded')\""
    w = world({
        "web.yaml": stack(dependsOn=["task/seed"]), **module(),
        "seed.yaml": declaration("Task", "seed", command=["sh", "-c", f"sleep 1; {seed}"]),
    })
    w.settle()
    web, seed_status = w.status("stack/web"), w.status("task/seed")
    assert web["lastRun"]["startedAt"] >= seed_status["lastRun"]["finishedAt"]
    assert web["dependencies"] == {"task/seed": seed_status["lastRun"]["id"]}
